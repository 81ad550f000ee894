"""Class / neuron visualization, fooling images and DeepDream on the shapes model and a random resnet18."""
import numpy as np
import pytest
import torch

import cnnviz_widgets as cw
from cnnviz_widgets.core import generate
from cnnviz_widgets.core.hooks import capture
from cnnviz_widgets.core.optimize import StepContext


def _values(steps, n):
    return [s.value for _, s in zip(range(n), steps)]


def _rises(values):
    return values[-1] > values[0] + 1e-3 * max(1.0, abs(values[0]))


# --- the objective rises within a few steps ------------------------------------------------------

def test_class_visualization_rises_on_the_shapes_model(shapes_model):
    viz = cw.class_visualization(shapes_model, "star", steps=6)
    assert _rises(viz.history) and viz.image.shape == (64, 64, 3) and viz.image.dtype == np.uint8
    assert viz.steps == 5


def test_neuron_and_dream_rise_on_the_shapes_model(shapes_model):
    assert _rises(_values(generate.neuron_visualization_steps(shapes_model, "features.conv3", 7), 6))
    assert _rises(_values(generate.neuron_visualization_steps(shapes_model, "features.conv2", 3, y=2, x=5), 6))
    image = cw.make_shapes(1, seed=5).images[0]
    assert _rises(_values(generate.deep_dream_steps(shapes_model, image, "features.conv3", octaves=1, steps=6), 6))


def test_class_neuron_and_dream_rise_on_a_random_resnet18(resnet18_random):
    vm = resnet18_random
    small = dict(size=48, jitter=0)   # a random shift changes a random net's answer more than one step does
    assert _rises(_values(generate.class_visualization_steps(vm, "black swan", **small), 4))
    assert _rises(_values(generate.neuron_visualization_steps(vm, "layer2", 5, **small), 4))
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert _rises(_values(generate.deep_dream_steps(vm, image, "layer2", octaves=1, steps=4), 4))


def test_deepdream_sets_the_layer_gradient_equal_to_its_activation(shapes_model):
    vm = shapes_model
    x = vm.to_input(cw.make_shapes(2, seed=3).images).requires_grad_(True)
    with capture(vm, "features.relu3", grad=True) as rec:
        logits = vm.module(x)
        ctx = StepContext(vm, None, x, logits, rec, 0)
        cw.deepdream("features.relu3")(ctx).backward()
    torch.testing.assert_close(rec.gradients["features.relu3"], rec.activations["features.relu3"].detach())


# --- fooling --------------------------------------------------------------------------------------

def test_fooling_rate_and_perturbation_on_50_pairs(shapes_model, record_property):
    data = cw.make_shapes(50, seed=777)
    rng = np.random.default_rng(0)
    n = len(shapes_model.class_names)
    results = []
    for image, label in zip(data.images, data.labels):
        target = int((label + rng.integers(1, n)) % n)            # any class but the true one
        results.append(cw.fooling_image(shapes_model, image, target, steps=100))
    rate = np.mean([r.fooled for r in results])
    linf = np.median([r.linf for r in results if r.fooled])
    record_property("fooling_rate", rate)
    record_property("median_linf_0_255", linf)
    print(f"fooled {rate:.0%} of 50 pairs; median L-inf {linf:.1f}/255; "
          f"median steps {np.median([r.steps for r in results]):.0f}")
    assert rate >= 0.95
    assert linf <= 12                                             # a few grey levels: invisible at 1x


def test_fooling_result_panels_and_predictions(shapes_model):
    image = cw.make_shapes(1, seed=11).images[0]
    top = shapes_model.predict(image, k=1)[0][0]
    target = (top + 1) % len(shapes_model.class_names)
    r = cw.fooling_image(shapes_model, image, target)
    assert r.fooled and r.fooled_prediction[0] == target and r.original_prediction[0] == top
    np.testing.assert_array_equal(r.difference, r.image.astype(np.float32) - r.original.astype(np.float32))
    np.testing.assert_array_equal(r.original, shapes_model.view(image))
    ten = r.difference_image(10).astype(np.float32)
    np.testing.assert_allclose(ten, np.clip(np.round(127.5 + 10 * r.difference), 0, 255), atol=1)
    assert r.target_probability[1] > r.target_probability[0]
    assert r.steps >= 1 and r.linf == np.abs(r.difference).max()


def test_fooling_stops_at_the_first_step_the_prediction_is_the_target(shapes_model):
    image = cw.make_shapes(1, seed=11).images[0]
    top = shapes_model.predict(image, k=1)[0][0]
    steps = list(generate.fooling_image_steps(shapes_model, image, (top + 1) % 8))
    predictions = [int(s.logits.argmax()) for s in steps]
    assert predictions[-1] == (top + 1) % 8 and all(p != (top + 1) % 8 for p in predictions[:-1])
    assert steps[-1].done and not any(s.done for s in steps[:-1])
    assert cw.fooling_image(shapes_model, image, top).steps == 0          # already the target: no step


# --- DeepDream and hygiene ------------------------------------------------------------------------

def test_deep_dream_octaves_go_from_small_to_full_size(shapes_model):
    image = cw.make_shapes(1, seed=5).images[0]
    steps = list(generate.deep_dream_steps(shapes_model, image, "features.conv3", octaves=3, octave_scale=1.5,
                                           steps=2))
    assert [tuple(s.pixels.shape[-2:]) for s in steps] == [(28, 28)] * 2 + [(43, 43)] * 2 + [(64, 64)] * 2
    assert [s.index for s in steps] == list(range(6)) and [s.done for s in steps] == [False] * 5 + [True]
    with pytest.raises(ValueError, match="octaves"):
        cw.deep_dream(shapes_model, image, "features.conv3", octaves=8, octave_scale=2.0)


def test_one_liners_leave_no_hooks_and_restore_the_model(shapes_model, no_hooks_left):
    shapes_model.module.train()
    try:
        image = cw.make_shapes(1, seed=5).images[0]
        cw.neuron_visualization(shapes_model, "features.conv2", 1, steps=2)
        cw.deep_dream(shapes_model, image, "features.conv3", octaves=1, steps=2)
        gen = generate.class_visualization_steps(shapes_model, 0, steps=50)
        next(gen)
        gen.close()                                                   # a stopped run
        with pytest.raises(ValueError, match="no spatial output"):
            cw.neuron_visualization(shapes_model, "classifier", 1, steps=2)   # an exception mid-run
        no_hooks_left(shapes_model)
        assert shapes_model.module.training and all(p.requires_grad for p in shapes_model.module.parameters())
    finally:
        shapes_model.module.eval()


def test_unknown_class_name_offers_close_matches(shapes_model):
    with pytest.raises(ValueError, match="'star'"):
        cw.class_visualization(shapes_model, "starr")


def test_a_start_where_no_relu_fires_is_explained(shapes_model):
    # the shapes model's first layer is silent on a flat image: the gradient there is exactly zero
    with pytest.raises(ValueError, match="exactly zero.*start='noise'"):
        cw.class_visualization(shapes_model, "star", start="zeros", steps=3)


def test_one_batch_makes_a_picture_per_class(shapes_model):
    viz = cw.class_visualization(shapes_model, ["circle", "star"], steps=8)
    assert viz.images.shape == (2, 64, 64, 3) and _rises(viz.history)
    with torch.no_grad():
        scores = shapes_model.module(shapes_model.normalize(viz.pixels))
    assert int(scores[0].argmax()) == 0 and int(scores[1].argmax()) == 4       # each image is taken for its class
