"""``view.set_image``: every view that takes an image takes a new one in place, keeping the user's settings;
a bad image is refused in the view's error line and the previous image and results stay."""
import numpy as np
import pytest
import torch
from torch import nn

import cnnviz_widgets as cw


@pytest.fixture(scope="module")
def shapes():
    return cw.make_shapes(4, seed=99).images


def _finish(view, timeout=60):
    from cnnviz_widgets.widgets._job import Job
    for value in list(vars(view).values()):
        if isinstance(value, Job):
            assert value.join(timeout)


def _refuses_a_bad_image(view, keep_attr):
    before = np.array(getattr(view, keep_attr), copy=True)
    view.set_image(b"certainly not a picture")
    assert view.error.layout.display != "none" and "not an image" in view.error.value
    assert np.array_equal(getattr(view, keep_attr), before), "the previous image stays"


def test_saliency_keeps_class_method_layer_and_opacity(shapes_model, shapes):
    view = cw.SaliencyExplorer(shapes_model)
    _finish(view)
    layers = list(view.layer_picker.options)
    view.method, view.target, view.layer, view.opacity = "saliency", 3, layers[-1], 0.8
    _finish(view)
    view.set_image(shapes[1])
    _finish(view)
    assert (view.method, view.target, view.layer, view.opacity) == ("saliency", 3, layers[-1], 0.8)
    assert np.array_equal(view.view_image, shapes_model.view(shapes[1]))
    assert view.class_picker.value == 3 and view.error.layout.display == "none", view.error.value
    expected = cw.saliency(shapes_model, shapes[1], target=3)
    np.testing.assert_allclose(view._maps[("saliency", 3, None)], expected, rtol=1e-5, atol=1e-7)
    _refuses_a_bad_image(view, "view_image")


def test_occlusion_keeps_class_patch_stride_and_fill(shapes_model, shapes):
    view = cw.OcclusionExplorer(shapes_model)
    c = (int(shapes_model.predict(shapes[2], k=1)[0][0]) + 1) % 5  # not the new image's top class
    view.target, view.patch, view.stride, view.fill = c, 12, 6, "mean"
    view.run().join()
    assert view._step is not None
    view.set_image(shapes[2])
    assert (view.target, view.patch, view.stride, view.fill) == (c, 12, 6, "mean")
    assert view._step is None, "the old image's map no longer applies"
    assert np.array_equal(view.view_image, shapes_model.view(shapes[2]))
    view.run().join()
    expected = cw.occlusion(shapes_model, shapes[2], target=c, patch=12, stride=6, fill="mean")
    np.testing.assert_allclose(view._step.map[0], expected, rtol=1e-5, atol=1e-6)
    _refuses_a_bad_image(view, "view_image")


def test_fooling_keeps_target_steps_and_step_size(shapes_model, shapes):
    view = cw.FoolingExplorer(shapes_model)
    view.target, view.steps, view.lr = 4, 7, 2.0
    view.set_image(shapes[3])
    assert (view.target, view.steps, view.lr) == (4, 7, 2.0)
    assert np.array_equal(view.picture, shapes_model.view(shapes[3])) and view.result is None
    _refuses_a_bad_image(view, "picture")


def test_deepdream_keeps_layer_octaves_and_steps_and_drops_the_old_dream(shapes_model, shapes):
    view = cw.DeepDreamViewer(shapes_model)
    layer = view.layer_picker.options[0]
    layer = layer[1] if isinstance(layer, tuple) else layer
    view.layer, view.octaves, view.steps = layer, 2, 2
    view.run().join()
    assert view.frames
    view.set_image(shapes[0])
    assert (view.layer, view.octaves, view.steps) == (layer, 2, 2)
    assert view.frames == [] and np.array_equal(view.picture, shapes_model.view(shapes[0]))
    _refuses_a_bad_image(view, "picture")


def test_gram_view_changes_image_a_and_keeps_the_layer(shapes_model, shapes):
    from cnnviz_widgets.core.layers import conv_layer_names
    layer = conv_layer_names(shapes_model)[0]
    view = cw.GramMatrixView(shapes_model, shapes[0], shapes[1], layer=layer)
    old = view.gram(0).copy()
    view.set_image(shapes[2])
    assert view.layer == layer
    fresh = cw.GramMatrixView(shapes_model, shapes[2], shapes[1], layer=layer)  # built on the new image
    np.testing.assert_array_equal(view.gram(0), fresh.gram(0))
    assert not np.allclose(view.gram(0), old)
    np.testing.assert_array_equal(view.gram(1), fresh.gram(1)), "image B untouched"


def test_a_view_without_an_image_says_so(shapes_model):
    with pytest.raises(TypeError, match="takes no image"):
        cw.FilterGrid(shapes_model).set_image(np.zeros((8, 8, 3), np.uint8))


def test_the_dashboard_hands_images_to_real_views_without_rebuilding_them(shapes_model, shapes):
    dash = cw.Dashboard(shapes_model, tabs=["Saliency", "Occlusion"])
    saliency = dash.select("Saliency")
    _finish(saliency)
    saliency.method, saliency.target = "SmoothGrad", 5
    occlusion = dash.select("Occlusion")
    occlusion.patch = 10
    dash.set_image(shapes[3])
    assert dash.views["Occlusion"] is occlusion and occlusion.patch == 10
    assert np.array_equal(occlusion.view_image, shapes_model.view(shapes[3]))
    assert dash.select("Saliency") is saliency
    _finish(saliency)
    assert (saliency.method, saliency.target) == ("SmoothGrad", 5)
    assert np.array_equal(saliency.view_image, shapes_model.view(shapes[3]))
