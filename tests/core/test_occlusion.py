"""Occlusion: exact against direct forward passes and captum, a grid that covers the edges, streaming."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

import cnnviz_widgets as cw
from cnnviz_widgets.core.occlusion import default_patch, fill_nan_nearest, occluded_input, patch_positions


@pytest.fixture(scope="module")
def tiny():
    """A small random CNN with 10 classes on 24x24 inputs: fast enough to check every position."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    return cw.load_model(net, input_size=24), torch.randn(2, 3, 24, 24)


def direct(vm, x, y, x0, patch, fill_value, target):
    occluded = x.clone()
    occluded[:, :, y:y + patch, x0:x0 + patch] = fill_value[:, :, y:y + patch, x0:x0 + patch]
    with torch.no_grad():
        return vm.module(occluded).softmax(-1)[:, target]


def test_grid_covers_the_edges():
    assert patch_positions(224, 32, 8) == list(range(0, 193, 8))  # 25 x 25 = 625 positions
    ys = patch_positions(64, 12, 5)
    assert ys[-1] == 52 and ys[:-1] == list(range(0, 51, 5))  # the last patch touches the border
    covered = np.zeros(64, bool)
    for y in ys:
        covered[y:y + 12] = True
    assert covered.all()
    assert default_patch((224, 224)) == (32, 8) and default_patch((64, 64)) == (9, 2)


@pytest.mark.parametrize("fill", ["zeros", "mean", "blur"])
def test_exact_against_direct_forward_passes(tiny, fill):
    vm, x = tiny
    grid = cw.occlusion(vm, x, target=[4, 7], patch=7, stride=4, fill=fill, batch_size=5)
    ys = patch_positions(24, 7, 4)
    assert grid.shape == (2, len(ys), len(ys)) == (2, 6, 6)
    fill_value = {"zeros": torch.zeros_like(x), "mean": x.mean((2, 3), keepdim=True).expand_as(x),
                  "blur": gaussian_blur(x, kernel_size=9, sigma=7 / 4)}[fill]  # sigma = patch / 4, radius 2 sigma
    rng = np.random.default_rng(0)
    for iy, ix in [(0, 0), (5, 5), (5, 0), *rng.integers(0, 6, size=(4, 2))]:
        expected = direct(vm, x, ys[iy], ys[ix], 7, fill_value, [4, 7])
        np.testing.assert_allclose(grid[[0, 1], iy, ix], expected.diagonal(), rtol=1e-6, atol=1e-7)


def test_fills_by_hand(tiny):
    vm, _ = tiny
    flat = torch.full((1, 3, 24, 24), 0.7)
    assert torch.allclose(occluded_input(vm, flat, 0, 0, 24, "blur"), flat)  # blurring a flat image changes nothing
    ramp = torch.arange(24.0).expand(1, 3, 24, 24).clone()
    out = occluded_input(vm, ramp, 2, 3, 5, "mean")
    assert torch.allclose(out[0, :, 2:7, 3:8], torch.tensor(11.5)) and torch.equal(out[0, :, :2], ramp[0, :, :2])
    assert torch.equal(occluded_input(vm, ramp, 0, 0, 4, "zeros")[0, :, :4, :4], torch.zeros(3, 4, 4))


def test_same_numbers_as_captum(tiny):
    """captum's map = per pixel, the mean over covering patches of (p without patch - p with patch)."""
    attr = pytest.importorskip("captum.attr")
    vm, x = tiny
    patch, stride = 8, 4  # (24 - 8) % 4 == 0: captum's grid is ours
    grid = cw.occlusion(vm, x[:1], target=3, patch=patch, stride=stride)
    base = torch.no_grad()(lambda: vm.module(x[:1]).softmax(-1)[0, 3])()
    drop, count = np.zeros((24, 24)), np.zeros((24, 24))
    for iy, y in enumerate(patch_positions(24, patch, stride)):
        for ix, x0 in enumerate(patch_positions(24, patch, stride)):
            drop[y:y + patch, x0:x0 + patch] += float(base) - grid[0, iy, ix]
            count[y:y + patch, x0:x0 + patch] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = attr.Occlusion(lambda z: vm.module(z).softmax(-1)).attribute(
            x[:1], sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), target=3, baselines=0)
    np.testing.assert_allclose(drop / count, ref[0, 0].numpy(), rtol=1e-5, atol=1e-7)


def test_steps_are_coarse_to_fine_and_end_in_the_full_map(tiny):
    vm, x = tiny
    steps = list(cw.occlusion_steps(vm, x[:1], target=1, patch=4, stride=2, batch_size=8))
    first = steps[0].map[0]
    assert steps[0].done == 8 and np.isnan(first).sum() == first.size - 8
    known = np.argwhere(~np.isnan(first))
    assert all(iy % 4 == 0 or iy == 10 for iy, _ in known)  # coarse rows first
    assert steps[-1].done == steps[-1].total == 121 and not np.isnan(steps[-1].map).any()
    # same cells, other batch composition: BLAS may round the last bit differently (cells differ by ~1e-4)
    np.testing.assert_allclose(steps[-1].map, cw.occlusion(vm, x[:1], target=1, patch=4, stride=2),
                               rtol=1e-6, atol=0)
    logits = cw.occlusion(vm, x[:1], target=1, patch=4, stride=2, probability=False)
    occluded = x[:1].clone()
    occluded[:, :, 20:24, 8:12] = 0
    with torch.no_grad():
        assert logits[0, 10, 4] == pytest.approx(float(vm.module(occluded)[0, 1]), rel=1e-6)  # the logit itself


def test_stopping_the_generator_restores_the_model(tiny, no_hooks_left):
    vm, x = tiny
    vm.module.train()
    steps = cw.occlusion_steps(vm, x, patch=4, stride=1, batch_size=4)
    next(steps)
    assert not vm.module.training  # eval inside
    steps.close()
    assert vm.module.training and all(p.requires_grad for p in vm.module.parameters())
    vm.module.eval()
    no_hooks_left(vm)


def test_fill_nan_nearest():
    grid = np.array([[1.0, np.nan, np.nan], [np.nan, np.nan, 5.0]])
    np.testing.assert_array_equal(fill_nan_nearest(grid), [[1, 1, 5], [1, 5, 5]])


def test_bad_arguments(tiny):
    vm, x = tiny
    with pytest.raises(ValueError, match="fill must be one of"):
        cw.occlusion(vm, x, fill="gray")
    with pytest.raises(ValueError, match="larger than the input"):
        cw.occlusion(vm, x, patch=30)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        cw.occlusion(vm, x, stride=0)
    with pytest.raises(TypeError, match="class probability"):
        cw.occlusion(vm, x, target=cw.neuron("0", 1))
