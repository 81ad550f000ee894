"""Every public name resolves, without heavy imports at package import."""
import subprocess
import sys

import cnnviz_widgets as cw


def test_every_public_name_resolves():
    missing = [name for name in cw.__all__ if getattr(cw, name, None) is None]
    assert missing == []
    assert set(cw.__all__) <= set(dir(cw))


def test_unknown_name_is_an_attribute_error():
    try:
        cw.no_such_thing
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_light():
    code = ("import sys, cnnviz_widgets; heavy = [m for m in ('torch', 'torchvision', 'ipywidgets', 'plotly', "
            "'sklearn', 'umap', 'openTSNE') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_widgets_never_imported_by_core():
    code = ("import sys; import cnnviz_widgets.core.attribution, cnnviz_widgets.core.occlusion, "
            "cnnviz_widgets.core.features, cnnviz_widgets.core.neighbors, cnnviz_widgets.core.embedding, "
            "cnnviz_widgets.core.generate, cnnviz_widgets.core.style, cnnviz_widgets.core.sanity; "
            "print(','.join(m for m in ('ipywidgets', 'plotly', 'anywidget', 'cnnviz_widgets.widgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
