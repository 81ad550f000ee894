"""Dashboard without a browser: lazy tabs, model and image pickers, errors kept in their tab,
independent instances, and a static PNG for every tab.

Most tests use small probe views (they record how and when they were built) so that what is
checked is the Dashboard's own bookkeeping; the last tests build the real views on the shapes model.
"""
import base64
import datetime
import importlib
import io
import json
import subprocess
import sys
import threading

import ipywidgets as w
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core.render import encode
from cnnviz_widgets.widgets import dashboard as dashboard_module
from cnnviz_widgets.widgets._base import View
from cnnviz_widgets.widgets.dashboard import Tab, default_tabs


class Probe(View):
    """A fake view: remembers the model and image it was built with; a picture of its own colour."""

    css_class = "cw-probe"

    def __init__(self, model, image, log, name, color):
        self.model, self.image, self.color = model, image, color
        log.append(name)
        super().__init__([w.HTML(name)])

    def snapshot(self):
        picture = np.zeros((32, 48, 3), np.uint8)
        picture[:, :24] = self.color
        return picture


class ImageProbe(Probe):
    """A fake view that takes a new image in place (no rebuild)."""

    def set_image(self, image):
        if image is not None and image.shape[0] < 4:
            raise ValueError("this probe wants images of at least 4 pixels")
        self.image = image


NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def tiny_module(width=4):
    torch.manual_seed(width)
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))


@pytest.fixture
def log():
    return []


@pytest.fixture
def probes(log):
    def tab(name, cls=Probe, color=(200, 40, 40), **deps):
        return Tab(lambda model, image: cls(model, image, log, name, color), **deps)
    return {
        "Filters": tab("Filters", uses_image=False),
        "Saliency": tab("Saliency", ImageProbe),
        "Occlusion": tab("Occlusion"),
        "Style": tab("Style", ImageProbe, uses_model=False),
    }


@pytest.fixture(scope="module")
def tiny():
    return cw.load_model(tiny_module(), input_size=32, device="cpu")


def test_only_the_first_tab_is_built_at_start_the_others_on_first_view(tiny, probes, log):
    dash = cw.Dashboard(tiny, tabs=probes)
    assert log == ["Filters"] and list(dash.views) == ["Filters"]
    view = dash.select("Occlusion")
    assert log == ["Filters", "Occlusion"] and view is dash.views["Occlusion"]
    dash.select("Filters")
    dash.select("Occlusion")
    assert log == ["Filters", "Occlusion"], "showing a tab again must not rebuild it"
    assert dash.tabs.titles == ("Filters", "Saliency", "Occlusion", "Style")


def test_a_model_switch_rebuilds_only_the_views_that_depend_on_it(tiny, probes, log):
    dash = cw.Dashboard(tiny, tabs=probes)
    for name in ("Saliency", "Style", "Filters"):
        dash.select(name)
    before = dash.views
    other = cw.load_model(tiny_module(6), input_size=32, device="cpu")
    dash.set_model(other)
    assert dash.views["Filters"] is not before["Filters"] and dash.views["Filters"].model is other  # shown: at once
    assert dash.views["Style"] is before["Style"], "Style does not depend on the model"
    assert log.count("Saliency") == 1, "a hidden dependent tab is rebuilt only when shown"
    assert dash.select("Saliency").model is other and log.count("Saliency") == 2
    assert "Occlusion" not in dash.views, "a never-shown tab stays unbuilt"
    old = before["Filters"]
    assert old.comm is None and old.status.comm is None, "a replaced view is closed (kernel and browser free it)"
    assert dash.views["Filters"].comm is not None


def test_offline_official_weights_show_the_message_and_keep_the_model(shapes_model, probes, log):
    dash = cw.Dashboard(shapes_model, tabs=probes)
    dash.weights_picker.value = "official"
    dash.model_picker.value = "resnet18"
    assert dash.ready(60), "the shapes model stays in use"
    assert "official weights of resnet18" in dash.error.value and "weights=None" in dash.error.value
    assert dash.model is shapes_model and dash.model_picker.value == "shapes"
    assert log == ["Filters"], "nothing was rebuilt for a model that did not load"
    dash.weights_picker.value = "random"  # the shapes model has one set of weights: nothing to reload
    assert log == ["Filters"]
    dash.model_picker.value = "resnet18"
    assert dash.ready(60)
    assert dash.error.layout.display == "none"
    assert dash.model.name == "resnet18" and dash.model.weights == "random"
    assert dash.views["Filters"].model is dash.model
    assert "model: resnet18 · weights: random · device: cpu" in dash.status.value


def test_the_status_line_names_model_weights_and_device(tiny, probes):
    dash = cw.Dashboard(tiny, tabs=probes)
    assert "model: Sequential · weights: yours · device: cpu · ready" in dash.status.value
    assert ("Sequential (yours)", "user") in dash.model_picker.options
    assert dash.weights_picker.disabled, "a user's module has no official/random choice"


def picker_shape(label: str) -> np.ndarray:
    """The picker's generated image of class ``label``, made independently of the picker."""
    from cnnviz_widgets.core.shapes import SHAPE_CLASSES
    from cnnviz_widgets.widgets._picker import SHAPES_SEED
    batch = cw.make_shapes(len(SHAPE_CLASSES), seed=SHAPES_SEED)
    return batch.images[list(batch.labels).index(SHAPE_CLASSES.index(label))]


def test_the_image_picker_carries_the_image_to_the_other_views(tiny, probes, log):
    from cnnviz_widgets.core.shapes import SHAPE_CLASSES
    dash = cw.Dashboard(tiny, tabs=probes)
    assert isinstance(dash.picker, cw.widgets._picker.ImagePicker), "the same picker the views use"
    assert dash.picker.value is None and dash.image is None, "starts on each view's own default"
    for name in ("Saliency", "Occlusion", "Style", "Filters"):
        dash.select(name)
    before, thumb = dash.views, dash.picker.thumb.value
    label = SHAPE_CLASSES[2]
    dash.picker.dropdown.value = f"shape: {label}"
    expected = picker_shape(label)
    assert np.array_equal(dash.image, expected)
    assert dash.views["Filters"] is before["Filters"], "Filters takes no image: untouched"
    assert dash.views["Saliency"].image is None, "a hidden view gets the image when shown, not before"
    assert dash.select("Saliency") is before["Saliency"] and np.array_equal(before["Saliency"].image, expected)
    assert np.array_equal(dash.select("Style").image, expected), "set_image carries it to Style too"
    assert dash.views["Occlusion"] is before["Occlusion"] and before["Occlusion"].image is None
    occlusion = dash.select("Occlusion")  # a tab of yours without set_image: rebuilt with image=... when shown
    assert occlusion is not before["Occlusion"] and np.array_equal(occlusion.image, expected)
    dash.set_image(expected[::-1])  # the view shown now gets it at once, by rebuild or by set_image
    assert np.array_equal(dash.views["Occlusion"].image, expected[::-1]) and len(log) == 6
    assert dash.picker.dropdown.value == "your image"
    dash.select("Style")
    dash.set_image(expected[:, ::-1])
    assert dash.views["Style"] is before["Style"] and np.array_equal(before["Style"].image, expected[:, ::-1])
    assert dash.picker.thumb.value != thumb, "the picker shows a thumbnail of the chosen image"
    dash.set_image(expected)  # the same pixels as an entry: that entry is selected, no new one
    assert dash.picker.dropdown.value == f"shape: {label}"
    dash.set_image(None)
    assert dash.image is None and dash.views["Style"].image is None, "None: each view's own default again"


def test_an_uploaded_image_is_carried_and_a_bad_file_is_refused_in_place(tiny, probes):
    dash = cw.Dashboard(tiny, tabs=probes)
    dash.select("Saliency")
    picture = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    dash.picker.upload.value = ({"name": "mine.png", "type": "image/png", "size": 1,
                                 "content": memoryview(encode(picture)), "last_modified": NOW},)
    assert np.array_equal(dash.views["Saliency"].image, picture)
    assert dash.picker.dropdown.options[-1] == "upload: mine.png" == dash.picker.dropdown.value
    dash.picker.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                                 "last_modified": NOW},)
    assert "notes.txt" in dash.error.value and "not an image" in dash.error.value
    assert np.array_equal(dash.image, picture), "the current image stays after a bad upload"
    dash.set_image(b"not a picture either")
    assert "not an image" in dash.error.value and np.array_equal(dash.image, picture)


def test_an_error_in_one_tab_stays_in_that_tab(tiny, probes, log):
    def broken(model, image):
        raise RuntimeError("the broken view failed on purpose")
    tabs = {**probes, "Broken": Tab(broken), "Missing": Tab(lambda m, i: importlib.import_module("cnnviz_nope"))}
    dash = cw.Dashboard(tiny, tabs=tabs)
    dash.select("Broken")
    assert dash.tab_error("Broken") == "Broken could not be shown: the broken view failed on purpose"
    panel = dash.tabs.children[dash.tabs.selected_index].children[0]
    assert "cw-tab-error" in panel._dom_classes and "failed on purpose" in panel.value
    assert dash.error.layout.display == "none", "the dashboard's own error line stays clear"
    dash.select("Missing")
    assert dash.tab_error("Missing") == "Missing is not available in this installation (No module named 'cnnviz_nope')"
    card = _png_array(dash)
    assert (card[..., 0].astype(int) - card[..., 1] > 100).any(), "the static PNG shows the error in red"
    assert dash.select("Saliency") is dash.views["Saliency"] and dash.tab_error("Saliency") is None
    dash.set_image(np.zeros((3, 3, 3), np.uint8))  # this probe refuses tiny images, in its own error line
    assert "at least 4 pixels" in dash.views["Saliency"].error.value
    assert dash.error.layout.display == "none"


def test_two_dashboards_do_not_share_state(tiny, probes, log):
    one, two = cw.Dashboard(tiny, tabs=probes), cw.Dashboard(tiny, tabs=probes)
    one.select("Saliency"), two.select("Saliency")
    seen = two.views
    one.set_model(cw.load_model(tiny_module(5), input_size=32, device="cpu"))
    one.set_image(np.full((16, 16, 3), 99, np.uint8))
    assert two.model is tiny and two.image is None and two.views == seen
    assert two.views["Saliency"].image is None and two.current == "Saliency"
    assert one.tabs is not two.tabs and one.model_picker is not two.model_picker
    assert cw.Dashboard(tiny)._tabs is not cw.Dashboard(tiny)._tabs, "each dashboard has its own registry"


def test_tabs_can_be_chosen_by_name_and_bad_names_are_refused(tiny):
    dash = cw.Dashboard(tiny, tabs=["Filters", "Style"])
    assert dash.tabs.titles == ("Filters", "Style")
    with pytest.raises(ValueError, match="unknown tab.*Salency.*choose from"):
        cw.Dashboard(tiny, tabs=["Filters", "Salency"])
    with pytest.raises(ValueError, match="no tab named 'Nope'"):
        dash.select("Nope")


def test_the_default_dashboard_starts_on_the_shapes_filters(shapes_model):
    dash = cw.Dashboard()
    assert dash.ready(60), dash.error.value
    assert list(dash.views) == ["Filters"] and dash.current == "Filters"
    assert "model: shapes · weights: embedded · device: cpu · ready" in dash.status.value
    assert dash.model_picker.value == "shapes" and dash.weights_picker.disabled
    grid = dash.views["Filters"].snapshot()
    picture = _png_array(dash)
    assert picture.shape[1] >= grid.shape[1] and picture.shape[0] > grid.shape[0]


def test_a_first_load_within_the_inline_time_returns_the_dashboard_complete(shapes_model, monkeypatch):
    """The constructor waits up to INLINE_S for its load: within it, the first tab and the static PNG a saved
    notebook keeps are there when the cell ends (the limit is raised here so the check never depends on speed)."""
    monkeypatch.setattr(dashboard_module, "INLINE_S", 60.0)
    dash = cw.Dashboard()
    assert list(dash.views) == ["Filters"] and dash.model.name == "shapes"
    grid = dash.views["Filters"].snapshot()
    picture = _png_array(dash)
    assert picture.shape[1] >= grid.shape[1] and picture.shape[0] > grid.shape[0], "the grid, not a loading card"


# --- a model named by a string loads in the background ----------------------------------------

@pytest.fixture
def gated_load(monkeypatch):
    """Hold the Dashboard's background loads (of models named by a string) until the returned Event is set."""
    gate = threading.Event()
    real = dashboard_module._load

    def held(model, weights):
        if isinstance(model, str):
            assert gate.wait(60), "the test never let the load go on"
        return real(model, weights)

    monkeypatch.setattr(dashboard_module, "_load", held)
    yield gate
    gate.set()


def test_the_shell_shows_while_the_model_loads_and_the_shown_tab_fills_when_ready(probes, log, gated_load):
    dash = cw.Dashboard("shapes", tabs=probes)
    assert dash.model is None and dash.views == {} and log == []
    assert "model: shapes · loading model…" in dash.status.value
    assert dash.model_picker.value == "shapes" and dash.model_picker.disabled and dash.weights_picker.disabled
    assert "loading model shapes" in dash.tabs.children[0].children[0].value
    loading = _png_array(dash)
    assert np.array_equal(loading, dash.snapshot()) and len(np.unique(loading.reshape(-1, 3), axis=0)) > 1
    dash.tabs.selected_index = 2  # a click while loading: nothing can be built yet
    assert log == [] and "loading model shapes" in dash.tabs.children[2].children[0].value
    assert not dash.ready(timeout=0.05)
    gated_load.set()
    assert dash.ready(60), dash.error.value
    assert log == ["Occlusion"], "only the tab shown when the model arrived is built"
    assert dash.model.name == "shapes" and dash.views["Occlusion"].model is dash.model
    assert "model: shapes · weights: embedded · device: cpu · ready" in dash.status.value
    assert not dash.model_picker.disabled and dash.weights_picker.disabled, "the embedded model has one weights"
    picture = _png_array(dash)
    assert picture.shape != loading.shape or not np.array_equal(picture, loading), "the PNG shows the built tab"


def test_select_and_set_model_wait_for_the_model_still_loading(tiny, probes, log, gated_load):
    dash = cw.Dashboard("shapes", tabs=probes)
    threading.Timer(0.2, gated_load.set).start()
    view = dash.select("Saliency")  # from code: waits, then returns the built view
    assert view is not None and view is dash.views["Saliency"] and view.model.name == "shapes"
    assert log == ["Filters", "Saliency"]
    assert dash.set_model(tiny) is tiny and dash.views["Saliency"].model is tiny


def test_a_failed_background_load_shows_in_place_and_another_model_can_be_picked(probes, log):
    dash = cw.Dashboard("resnet18", tabs=probes)  # offline, no weights in the test's hub cache
    assert not dash.ready(60)
    assert "could not load resnet18" in dash.error.value and "official weights of resnet18" in dash.error.value
    assert dash.model is None and log == [] and "model: resnet18 · not loaded" in dash.status.value
    assert "pick one above" in dash.tabs.children[0].children[0].value
    assert not dash.model_picker.disabled and not dash.weights_picker.disabled, "the pickers open again"
    card = _png_array(dash)
    assert (card[..., 0].astype(int) - card[..., 1] > 100).any(), "the static PNG shows the error in red"
    dash.weights_picker.value = "random"
    assert dash.ready(60)
    assert dash.model.name == "resnet18" and dash.model.weights == "random"
    assert log == ["Filters"] and dash.views["Filters"].model is dash.model
    assert dash.error.layout.display == "none" and "ready" in dash.status.value


def test_a_model_picked_loads_in_the_background_and_the_one_in_use_stays_meanwhile(shapes_model, probes, log,
                                                                                  gated_load):
    dash = cw.Dashboard(shapes_model, tabs=probes)
    dash.weights_picker.value = "random"
    dash.model_picker.value = "resnet18"              # returns at once: the kernel's thread is free
    assert dash.model is shapes_model and dash.views["Filters"].model is shapes_model
    assert "model: shapes" in dash.status.value and "loading resnet18…" in dash.status.value
    assert dash.model_picker.value == "resnet18" and dash.model_picker.disabled and dash.weights_picker.disabled
    assert not dash.ready(timeout=0.05) and log == ["Filters"]
    gated_load.set()
    assert dash.ready(60), dash.error.value
    assert dash.model.name == "resnet18" and dash.model.weights == "random"
    assert log == ["Filters", "Filters"] and dash.views["Filters"].model is dash.model, "the shown tab is rebuilt"
    assert not dash.model_picker.disabled and not dash.weights_picker.disabled
    assert "model: resnet18 · weights: random · device: cpu · ready" in dash.status.value


SHELL_BEFORE_TORCH = """
import json, sys, threading
gate, on_main = threading.Event(), []

class HoldTorch:  # `import torch` waits on any thread but the main one, which is only recorded
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            if threading.current_thread() is threading.main_thread():
                on_main.append(name)
            else:
                gate.wait(60)
        return None

sys.meta_path.insert(0, HoldTorch())
import cnnviz_widgets as cw
dash = cw.Dashboard()
bundle = dash._repr_mimebundle_()
shell = {"torch": "torch" in sys.modules, "on_main": list(on_main), "status": dash.status.value,
         "png": "image/png" in bundle, "views": list(dash.views)}
gate.set()
print(json.dumps({**shell, "ready": dash.ready(60), "views_after": list(dash.views), "on_main_after": on_main}))
"""


def test_the_shell_and_its_display_data_need_no_torch():
    """In a fresh kernel the Dashboard appears while torch is still being imported on the loader's thread."""
    out = subprocess.run([sys.executable, "-c", SHELL_BEFORE_TORCH], capture_output=True, text=True, check=True,
                         timeout=180)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["torch"] is False and seen["on_main"] == [], "the kernel's thread imported torch"
    assert "loading model" in seen["status"] and seen["png"] and seen["views"] == []
    assert seen["ready"] and seen["views_after"] == ["Filters"] and seen["on_main_after"] == []


# --- every real tab on the shapes model --------------------------------------------------------

TAB_MODULES = {"Filters": "filter_grid", "Neighbours": "neighbors", "Embedding": "scatter",
               "Occlusion": "occlusion", "Saliency": "saliency", "Gradient ascent": "ascent",
               "Fooling": "fooling", "DeepDream": "dream", "Style": "style"}


def test_the_registry_covers_the_lecture_in_order():
    assert list(default_tabs()) == list(TAB_MODULES)


@pytest.mark.parametrize("name", list(TAB_MODULES))
def test_every_tab_builds_and_its_static_png_is_not_blank(shapes_model, name):
    pytest.importorskip(f"cnnviz_widgets.widgets.{TAB_MODULES[name]}", reason=f"the {name} view has not landed")
    dash = cw.Dashboard(shapes_model, tabs=[name], image=cw.make_shapes(1, seed=3).images[0])
    assert dash.tab_error(name) is None
    view = dash.views[name]
    _finish_jobs(view)
    picture = _png_array(dash)
    assert np.array_equal(picture, dash.snapshot())
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 8, f"the {name} PNG is (nearly) one colour"
    own = view.snapshot()
    if own is not None:  # the dashboard's picture is the view's own, under a caption
        assert picture.shape[0] > 24 and picture.shape[1] == max(240, own.shape[1])
        assert len(np.unique(own.reshape(-1, own.shape[-1]), axis=0)) > 1, f"the {name} view's picture is blank"


def _finish_jobs(view, timeout=60):
    """Wait for the background jobs a view started when built (whatever attribute holds them)."""
    from cnnviz_widgets.widgets._job import Job

    for value in list(vars(view).values()):
        if isinstance(value, Job):
            assert value.join(timeout), "a view's first computation did not finish"


def _png_array(widget) -> np.ndarray:
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB"))


def test_a_long_message_wraps_on_the_static_card_instead_of_being_cut():
    words = " ".join(f"word{i}" for i in range(120))            # ~900 characters, one line
    card = dashboard_module._text_card([words, "last"], width=480)
    rows = (card.shape[0] - 16) // 16
    assert rows >= 8, "wrapped onto several rows"
    ink = (card < 128).any(axis=(1, 2))                            # rows of pixels with text on them
    assert ink[8 + 16 * (rows - 1):].any(), "the last line is drawn too"
    assert not (card[:, -8:] < 128).any(), "no text runs over the right margin"
