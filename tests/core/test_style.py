"""Gram matrix, losses by hand; style transfer through the one Ascent loop on a small random VGG trunk."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnviz_widgets as cw
from cnnviz_widgets.core import style as S

# --- hand-computed values -------------------------------------------------------------------------

F1 = torch.tensor([[[1.0, 2.0], [3.0, 4.0]],       # channel 0
                   [[0.0, 1.0], [0.0, -1.0]]])     # channel 1: a (2, 2, 2) feature tensor


def test_gram_matrix_single_by_hand():
    # G[i, j] = sum over the 4 positions of F_i * F_j, divided by 4
    expected = torch.tensor([[(1 + 4 + 9 + 16) / 4, (0 + 2 + 0 - 4) / 4],
                             [(0 + 2 + 0 - 4) / 4, (0 + 1 + 0 + 1) / 4]])
    assert torch.allclose(cw.gram_matrix(F1), expected)


def test_gram_matrix_batched_matches_each_item():
    batch = torch.stack([F1, 2 * F1])
    g = cw.gram_matrix(batch)
    assert g.shape == (2, 2, 2)
    assert torch.allclose(g[0], cw.gram_matrix(F1))
    assert torch.allclose(g[1], 4 * cw.gram_matrix(F1))  # scaling features by 2 scales G by 4


def test_gram_matrix_gradient_by_hand():
    # L = sum(W * G) with G = F F^T / HW  =>  dL/dF = (W + W^T) F / HW (F flattened to C x HW)
    W = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    f = F1.clone().requires_grad_(True)
    (W * cw.gram_matrix(f)).sum().backward()
    expected = ((W + W.T) @ F1.reshape(2, 4) / 4).reshape(2, 2, 2)
    assert torch.allclose(f.grad, expected)


@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 3, 4, 5), (2, 3, 4, 5)])
def test_gram_matrix_gradients_match_autograd(shape):
    # the one-product backward against autograd's own rule, and second derivatives too
    f = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cw.gram_matrix, (f,))
    assert torch.autograd.gradgradcheck(cw.gram_matrix, (f,))
    plain = f.flatten(-2) @ f.flatten(-2).transpose(-1, -2) / (shape[-1] * shape[-2])
    assert torch.allclose(cw.gram_matrix(f), plain)


def test_gram_matrix_of_channels_last_features():
    # the trunk runs channels-last: same Gram and gradient as contiguous features, the gradient in their layout
    f = torch.randn(1, 6, 5, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert torch.autograd.gradcheck(cw.gram_matrix, (f,))
    plain = f.detach().contiguous().requires_grad_(True)
    W = torch.randn(1, 6, 6, dtype=torch.float64)
    (W * cw.gram_matrix(f)).sum().backward()
    (W * cw.gram_matrix(plain)).sum().backward()
    assert torch.allclose(f.grad, plain.grad)
    assert f.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("bad", [torch.ones(3), torch.ones(2, 3), torch.ones(1, 1, 2, 2, 2)])
def test_gram_matrix_rejects_wrong_rank(bad):
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        cw.gram_matrix(bad)


def test_gram_matrix_rejects_non_tensor():
    with pytest.raises(TypeError, match="torch tensor"):
        cw.gram_matrix(np.ones((2, 2, 2)))


def test_content_loss_by_hand():
    target = torch.tensor([[1.0, 2.0], [2.0, 0.0]])      # ||P||^2 = 9
    features = torch.tensor([[1.0, 1.0], [2.0, 3.0]])    # ||F - P||^2 = 1 + 9 = 10
    assert S.content_loss(features, target).item() == pytest.approx(10 / 9)


def test_style_loss_by_hand():
    target = cw.gram_matrix(F1)                           # [[7.5, -0.5], [-0.5, 0.5]]; ||A||^2 = 56.25 + 0.25 + 0.25 + 0.25
    features = torch.zeros(2, 2, 2)
    features[0] = 1.0                                     # G = [[1, 0], [0, 0]]
    diff = (1 - 7.5) ** 2 + 0.5 ** 2 * 2 + 0.5 ** 2
    assert S.style_loss(features, target).item() == pytest.approx(diff / 57.0)
    assert S.style_loss(F1, target).item() == pytest.approx(0.0)


def test_tv_loss_by_hand():
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0] = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    vertical = 2 ** 2 + 1 ** 2 + 1 ** 2                   # (2-0), (2-1), (2-3)
    horizontal = 1 ** 2 + 2 ** 2 + 0 + 0                  # row 0: 1, 2; row 1: 0, 0
    assert S.tv_loss(x).item() == pytest.approx((vertical + horizontal) / 6)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same model, layer and image size"):
        S.content_loss(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 3, 3))


def test_style_objective_weights_checked():
    with pytest.raises(ValueError, match="one per layer"):
        S.style_objective({"a": torch.eye(2), "b": torch.eye(2)}, [1.0])
    with pytest.raises(ValueError, match="not style layers"):
        S.style_objective({"a": torch.eye(2)}, {"z": 1.0})


@pytest.fixture(scope="module")
def small_vgg():
    return S.style_model("vgg16")[0]  # the offline default (tests run offline), built once


# --- inputs -------------------------------------------------------------------------------------------

def test_prepare_notes_resize_gray_and_mismatch(small_vgg):
    rng = np.random.default_rng(0)
    content = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)          # tiny: upscaled
    gray = rng.integers(0, 255, (300, 200), dtype=np.uint8)               # grayscale, other size
    setup = S.prepare_style(content, gray, model=small_vgg, size=64)
    assert tuple(setup.content.shape) == (1, 3, 43, 64)
    assert tuple(setup.style.shape) == (1, 3, 43, 64)                    # style brought to the content's size
    text = " | ".join(setup.notes)
    assert "content image 30x20 resized to 64x43 (it was tiny)" in text
    assert "style image is grayscale" in text
    assert "style image 200x300 resized to 64x43 to match the content" in text


@pytest.mark.parametrize("size", [8, 5000, 64.5, True])
def test_prepare_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size must be an int"):
        S.prepare_image(np.zeros((64, 64, 3), np.uint8), size, "content")


def test_prepare_rejects_a_sliver():
    with pytest.raises(ValueError, match="too narrow"):
        S.prepare_image(np.zeros((4, 400, 3), np.uint8), 128, "content")


# --- the loop: the offline VGG-16 trunk at 48 px ---------------------------------------------------------



@pytest.fixture(scope="module")
def cat_gravel(small_vgg):
    imgs = cw.sample_images()
    return S.prepare_style(imgs["cat"], imgs["gravel"], small_vgg, size=48)


@pytest.mark.parametrize("optimizer,steps", [("lbfgs", 10), ("adam", 15)])
def test_style_loss_falls_90_percent_content_stays_bounded(cat_gravel, small_vgg, no_hooks_left, optimizer, steps):
    ascent = S.transfer_ascent(cat_gravel, optimizer=optimizer, steps=steps,
                               content_layer="features.11", style_layers=("features.1", "features.6", "features.11"))
    losses = [S.step_losses(s) for s in ascent.steps()]
    first, last = losses[0], losses[-1]
    assert first["content"] == pytest.approx(0.0, abs=1e-6)             # starts at the content image
    assert last["style"] <= 0.1 * first["style"], (first, last)
    assert last["content"] < 0.5, last                                  # relative: the content is still there
    assert set(last) == {"loss", "content", "style", "tv"}
    no_hooks_left(small_vgg)
    assert all(p.requires_grad for p in small_vgg.module.parameters())  # model state restored


def test_stopping_the_steps_restores_the_model(cat_gravel, small_vgg, no_hooks_left):
    steps = S.transfer_ascent(cat_gravel, steps=50, style_layers=("features.1",), content_layer="features.1").steps()
    next(steps)
    steps.close()
    no_hooks_left(small_vgg)
    assert all(p.requires_grad for p in small_vgg.module.parameters())


def test_trunk_cuts_after_the_deepest_layer(small_vgg):
    cut = S.trunk(small_vgg, ["features.6", "features.1"])
    assert [n for n, _ in cut.module.named_modules()][-1] == "features.6"
    assert cut.mean == small_vgg.mean


def test_trunk_runs_channels_last_with_the_same_values_and_gradients(small_vgg):
    from cnnviz_widgets.core.hooks import capture, frozen

    cut = S.trunk(small_vgg, ["features.6"])
    x = torch.rand(1, 3, 40, 48)
    got = {}
    for name, vm in (("full", small_vgg), ("cut", cut)):
        xg = x.clone().requires_grad_(True)
        with frozen(vm), capture(vm, "features.6") as rec:
            vm.module(vm.normalize(xg))
            grad, = torch.autograd.grad(rec["features.6"].pow(2).sum(), xg)
        got[name] = rec["features.6"].detach(), grad
    assert got["cut"][0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got["cut"][0], got["full"][0], rtol=1e-4, atol=1e-5)
    assert torch.allclose(got["cut"][1], got["full"][1], rtol=1e-4, atol=1e-4 * got["full"][1].abs().max())


def test_trunk_keeps_the_layout_of_a_custom_block():
    class Flat(torch.nn.Module):  # .view() needs a contiguous NCHW input
        def forward(self, x):
            return x.view(x.shape[0], -1).view_as(x)

    features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), Flat(), torch.nn.ReLU())
    vm = cw.as_model(torch.nn.Sequential(OrderedDict(features=features)))
    cut = S.trunk(vm, ["features.2"])
    assert [n for n, _ in cut.module.named_children()] == ["features"]
    cut.module(torch.rand(1, 3, 8, 8))                                    # runs (channels-last would raise)


def test_offline_default_is_labelled_random_vgg16():
    vm, note = S.style_model("vgg16")                                    # tests run with CNNVIZ_OFFLINE=1
    assert vm.name == "vgg16" and vm.random_weights and vm is S.style_model("vgg16")[0]  # built once
    assert note.startswith("offline: random-weight VGG-16")


def test_feature_inversion_of_a_shallow_layer_recovers_the_image(small_vgg):
    image = np.asarray(cw.sample_images()["astronaut"].resize((32, 32)))
    result = cw.feature_inversion(small_vgg, image, "features.6", size=32, steps=15, optimizer="lbfgs")  # relu2_1
    target = image.astype(np.float32)
    err_result = np.abs(result.image.astype(np.float32) - target).mean()
    err_gray = np.abs(np.full_like(target, 127.0) - target).mean()
    assert result.losses[-1]["content"] < 0.1 * result.losses[0]["content"]
    assert err_result < 0.5 * err_gray, (err_result, err_gray)   # measured: 17 vs 65 (0-255 scale)


def test_texture_synthesis_has_no_content_term(shapes_model):
    result = cw.texture_synthesis(cw.sample_images()["brick"], shapes_model, size=48, steps=8)
    assert set(result.losses[-1]) == {"loss", "style"}
    assert result.losses[-1]["style"] < result.losses[0]["style"]
    assert result.image.shape == (48, 48, 3) and result.image.dtype == np.uint8


def test_bad_task_options(cat_gravel):
    with pytest.raises(ValueError, match="'lbfgs' or 'adam'"):
        S.transfer_ascent(cat_gravel, optimizer="sgd2")
    with pytest.raises(ValueError, match="init must be"):
        S.transfer_ascent(cat_gravel, init="zeros")
    with pytest.raises(ValueError, match="nothing to optimize"):
        S.transfer_ascent(cat_gravel, content_weight=0, style_weight=0)
