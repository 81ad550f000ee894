"""GradientAscentViewer, FoolingExplorer, DeepDreamViewer driven without a browser: run, stop, errors, save."""
import io
import time

import numpy as np
import pytest
from PIL import Image

import cnnviz_widgets as cw
from cnnviz_widgets.core import generate
from cnnviz_widgets.core.optimize import AscentDiverged


def _state(vm):
    return ([m.training for m in vm.module.modules()], [p.requires_grad for p in vm.module.parameters()])


@pytest.fixture
def viewer(shapes_model):
    v = cw.GradientAscentViewer(shapes_model, target="star")
    v.steps = 12
    yield v
    v.stop()
    if v.job is not None:
        v.job.join(10)


def test_run_streams_frames_value_and_plot(viewer, shapes_model, no_hooks_left):
    before = viewer.frame.value
    viewer.run().join()
    assert viewer.error.layout.display == "none", viewer.error.value
    assert viewer.frame.value != before and viewer.picture.shape == (64, 64, 3)
    assert len(viewer.history) == 12 and viewer.history[-1][1] > viewer.history[0][1]   # the class score rose
    assert "done" in viewer.status.value and "12/12" in viewer.status.value
    assert len(viewer.plot.data[0].y) >= 2                       # the objective plot was drawn
    assert not viewer.run_button.disabled and viewer.stop_button.disabled and not viewer.save_button.disabled
    no_hooks_left(shapes_model)
    assert "image/png" in viewer._repr_mimebundle_()


def test_save_gives_png_of_the_final_image_and_gif_of_the_run(viewer, tmp_path):
    viewer.run().join()
    viewer.save_button.click()
    png = Image.open(io.BytesIO(viewer.saved_png))
    assert png.format == "PNG" and np.array_equal(np.asarray(png.convert("RGB")), viewer.picture)
    gif = Image.open(io.BytesIO(viewer.saved_gif))
    assert gif.format == "GIF" and gif.n_frames == len(viewer.frames) >= 1
    assert "data:image/png;base64," in viewer.download.value and "data:image/gif;base64," in viewer.download.value
    viewer.save(tmp_path / "viz.gif")
    assert (tmp_path / "viz.gif").read_bytes() == viewer.saved_gif
    viewer.save_button.click()
    viewer.save(tmp_path / "ok.png")
    with pytest.raises(ValueError, match=".png or .gif"):
        viewer.save(tmp_path / "viz.jpg")


def test_unknown_class_name_shows_close_matches_in_place(viewer):
    viewer.target = "circel"
    viewer.run_button.click()
    assert viewer.job is None
    assert "unknown class name" in viewer.error.value and "circle" in viewer.error.value


def test_channel_at_a_layer_without_spatial_output_is_explained_and_the_last_picture_kept(viewer):
    viewer.run().join()
    kept = viewer.picture
    viewer.kind, viewer.layer, viewer.channel = "channel", "classifier", 2
    viewer.run_button.click()
    viewer.job.join()
    assert "no spatial output" in viewer.error.value
    assert viewer.picture is kept and not viewer.save_button.disabled
    viewer.save()
    assert viewer.saved_png


def test_channel_objective_runs(viewer):
    viewer.kind, viewer.layer, viewer.channel = "channel", "features.conv3", 5
    viewer.steps = 5
    viewer.run().join()
    assert viewer.error.layout.display == "none", viewer.error.value
    assert len(viewer.history) == 5


def test_nan_during_the_run_is_reported_and_the_frames_before_are_kept(viewer, monkeypatch):
    real = generate.class_visualization_steps

    def diverging(*args, **kwargs):
        for step in real(*args, **kwargs):
            if step.index == 4:
                raise AscentDiverged("the objective became nan at step 4; lower the step size")
            yield step
    monkeypatch.setattr(generate, "class_visualization_steps", diverging)
    viewer.run().join()
    assert "became nan" in viewer.error.value
    assert viewer.last_step.index == 3 and viewer.picture is not None
    viewer.save()
    assert viewer.saved_gif


def test_stop_stops_within_a_second_and_restores_the_model(shapes_model, no_hooks_left):
    shapes_model.module.train()
    state = _state(shapes_model)
    viewer = cw.GradientAscentViewer(shapes_model, target="circle")
    viewer.steps = 1000
    job = viewer.run()
    deadline = time.monotonic() + 30
    while len(viewer.history) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    viewer.stop_button.click()
    assert job.join(timeout=1.0)
    assert job.stopped and "stopped at" in viewer.status.value and len(viewer.history) < 1000
    assert viewer.picture is not None and not viewer.save_button.disabled
    no_hooks_left(shapes_model)
    assert _state(shapes_model) == state
    shapes_model.module.eval()


def test_fooling_explorer_shows_the_four_panels_and_both_predictions(shapes_model):
    explorer = cw.FoolingExplorer(shapes_model)
    original_top = shapes_model.predict(explorer.picker.value, k=1)[0]
    assert explorer.target != original_top[0]          # starts on the runner-up class
    explorer.run().join()
    r = explorer.result
    assert r.fooled and r.fooled_prediction[0] == explorer.target
    assert r.original_prediction[0] == original_top[0]
    assert explorer.picture.shape == (68, 4 * 64 + 10, 3)     # four 64-px panels, 2-px padding
    assert original_top[1] in explorer.captions.value and shapes_model.class_names[explorer.target] in explorer.captions.value
    assert "fooled after" in explorer.status.value


def test_fooling_explorer_new_image_resets(shapes_model):
    explorer = cw.FoolingExplorer(shapes_model)
    explorer.picker.dropdown.value = explorer.picker.dropdown.options[2]
    assert explorer.result is None and "the model says" in explorer.status.value


def test_deep_dream_viewer_runs_every_octave(shapes_model):
    viewer = cw.DeepDreamViewer(shapes_model)
    viewer.octaves, viewer.steps = 2, 3
    viewer.run().join()
    assert viewer.error.layout.display == "none", viewer.error.value
    assert [i for i, _ in viewer.history] == list(range(6))
    assert viewer.picture.shape == (64, 64, 3) and "6/6" in viewer.status.value
    viewer.save()
    assert Image.open(io.BytesIO(viewer.saved_gif)).size == (64, 64)


def test_deep_dream_viewer_bad_octaves_explained(shapes_model):
    viewer = cw.DeepDreamViewer(shapes_model)
    viewer.octaves, viewer.octave_scale = 6, 2.0
    viewer.run_button.click()
    viewer.job.join()
    assert "octaves" in viewer.error.value
