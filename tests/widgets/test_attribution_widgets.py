"""SaliencyExplorer, OcclusionExplorer and SanityCheck driven without a browser."""
import datetime
import time

import numpy as np

import cnnviz_widgets as cw
from cnnviz_widgets.widgets.saliency import ALL


def upload(picker, name: str, content: bytes):
    picker.upload.value = ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
                            "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def png_bytes(array) -> bytes:
    from cnnviz_widgets.core.render import encode
    return encode(array)


def test_saliency_explorer(shapes_model):
    view = cw.SaliencyExplorer(shapes_model)
    view._job.join()
    assert view.error.value == "" and "Grad-CAM" in view.status.value
    slot = view._slots["Grad-CAM"][1]
    first = slot.value
    assert first and view.snapshot().shape[2] == 3
    assert view.class_picker.options[0][0].endswith("%)")  # top-5 with probabilities first
    view.target = view.class_picker.options[1][1]          # another class: a new map
    view._job.join()
    assert slot.value != first and view.class_picker.options[1][0].split(" (")[0] in view.status.value
    view.method = ALL
    view._job.join()
    shown = [m for m, (box, _) in view._slots.items() if box.layout.display != "none"]
    assert len(shown) == 5 and view.snapshot().shape[1] > 4 * 64
    before = view._slots["saliency"][1].value
    view.opacity = 0.9  # redraw without recomputing
    assert view._slots["saliency"][1].value != before


def test_bad_upload_shows_a_message_and_the_widget_keeps_working(shapes_model):
    view = cw.SaliencyExplorer(shapes_model)
    view._job.join()
    upload(view.picker, "notes.png", b"this is not an image")
    assert "notes.png" in view.error.value and "not an image file" in view.error.value
    upload(view.picker, "shape.png", png_bytes(cw.make_shapes(1, seed=990).images[0]))
    view._job.join()
    assert view.picker.dropdown.value == "upload: shape.png" and view.error.value == ""
    assert view._slots["Grad-CAM"][1].value


def test_occlusion_explorer_run_position_and_stop(shapes_model):
    view = cw.OcclusionExplorer(shapes_model)
    assert view.patch == 9 and view.stride == 2 and view.position_slider.max == 29 * 29 - 1
    blank = view.map_image.value
    view.patch, view.stride = 16, 8
    view.run().join()
    assert view.progress.value == 1.0 and view.map_image.value != blank and "done: 49/49" in view.status.value
    label = view.position_label.value
    view.position = 48  # bottom-right: the patch touches both edges
    assert "y=48, x=48" in view.position_label.value and view.position_label.value != label
    p = float(view.position_label.value.split("= ")[-1].split("<")[0])
    assert abs(p - view._step.map[0, 6, 6]) < 1e-3
    view.patch, view.stride = 4, 1  # 3721 positions: stop well before the end
    job = view.run()
    time.sleep(0.3)
    t0 = time.monotonic()
    view.stop_button.click()
    assert time.monotonic() - t0 < 1.0 and job.stopped
    assert view._step is None or np.isnan(view._step.map).any()  # the partial map is kept as it was
    assert not view.run_button.disabled


def test_sanity_check_view(shapes_model):
    view = cw.SanityCheck(shapes_model, method="saliency")
    view.run().join()
    assert view.error.value == "" and view.table.value.count("<tr>") == 1 + 10
    assert view.snapshot() is not None and "final Spearman" in view.status.value
