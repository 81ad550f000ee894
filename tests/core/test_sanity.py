"""Sanity check (Adebayo et al. 2018): randomizing the weights must change saliency and Grad-CAM maps."""
import numpy as np
import pytest
import torch

import cnnviz_widgets as cw
from cnnviz_widgets.core.sanity import cascade_layers, sanity_steps, spearman


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(12, 12)).astype(float)  # many ties
    b = a + rng.normal(0, 2, size=a.shape)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    assert spearman(np.zeros(5), np.arange(5)) == 0.0  # a constant map carries no ranking


@pytest.fixture(scope="module")
def image():
    return cw.make_shapes(1, seed=781).images[0]


@pytest.mark.parametrize("method", ["saliency", "grad_cam", "guided_backprop"])
def test_cascading_randomization(shapes_model, image, method, no_hooks_left):
    before = {k: v.clone() for k, v in shapes_model.module.state_dict().items()}
    stages = cw.sanity_check(method, shapes_model, image)
    assert [s.layer for s in stages] == ["original", *cascade_layers(shapes_model.module)]
    assert stages[1].layer == "classifier" and stages[0].spearman == 1.0
    assert all(s.map.shape == (64, 64) for s in stages)
    final = stages[-1].spearman
    print(f"sanity check {method}: Spearman per stage", [round(s.spearman, 3) for s in stages])
    if method != "guided_backprop":  # guided backprop: computed and reported as it is
        assert final < 0.5, f"{method} map survives randomizing every layer (Spearman {final:.2f})"
    after = shapes_model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the user's model was never touched
    no_hooks_left(shapes_model)


def test_callable_method_and_streaming(shapes_model, image):
    calls = []

    def method(model, img, target=None):
        calls.append(target)
        return cw.grad_cam(model, img, target=target)

    steps = sanity_steps(method, shapes_model, image, target="star")
    first = next(steps)
    assert first.index == 0 and calls == ["star"]
    steps.close()


def test_bad_arguments(shapes_model, image):
    with pytest.raises(ValueError, match="unknown method"):
        cw.sanity_check("lime", shapes_model, image)
    with pytest.raises(ValueError, match="one image"):
        cw.sanity_check("saliency", shapes_model, np.stack([image, image]))
