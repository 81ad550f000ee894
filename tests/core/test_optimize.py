"""The one loop: regularizers on hand-made tensors, step semantics, optimizers, and hook/state hygiene."""
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core import optimize as opt
from cnnviz_widgets.core.objectives import Objective


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return cw.load_model(module, class_names=["circle", "square", "star"], input_size=16, device="cpu")


# --- regularizers on hand-made tensors ------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_blur_matches_scipy_gaussian_filter(sigma):
    x = torch.rand(1, 3, 20, 17, generator=torch.Generator().manual_seed(1))
    reference = np.stack([gaussian_filter(c, sigma, mode="mirror", truncate=4.0) for c in x[0].double().numpy()])
    np.testing.assert_allclose(opt.gaussian_blur(x, sigma)[0].numpy(), reference, atol=1e-6)


def _pixels_with_norms(norms):
    """(1, 3, 10, 10): pixel i has RGB norm norms[i] (direction varies from pixel to pixel)."""
    g = torch.Generator().manual_seed(2)
    direction = torch.randn(3, 100, generator=g)
    direction = direction / direction.norm(dim=0)
    return (direction * norms).view(1, 3, 10, 10)


def test_clip_small_norm_zeroes_exactly_the_pixels_below_the_percentile():
    norms = torch.randperm(100, generator=torch.Generator().manual_seed(3)).float() + 1   # 1..100, shuffled
    x = _pixels_with_norms(norms)
    out = opt.zero_small_norm(x, 30)
    zeroed = (out == 0).all(dim=1).view(-1)
    assert torch.equal(zeroed, norms <= 30)                # the 30 smallest of 100
    assert torch.equal(out.view(3, -1)[:, ~zeroed], x.view(3, -1)[:, ~zeroed])


def test_clip_small_contribution_uses_pixel_times_image_gradient():
    x = torch.ones(1, 3, 10, 10)
    contribution = torch.randperm(100, generator=torch.Generator().manual_seed(4)).float() + 1
    grad = (contribution / 3).view(1, 1, 10, 10).expand(1, 3, 10, 10) * torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1)
    grad = grad * torch.tensor([3.0, 0.0, 0.0]).view(1, 3, 1, 1) / 1.0   # sum_c x_c g_c = contribution (one channel)
    out = opt.zero_small_contribution(x, grad, 20)
    zeroed = (out == 0).all(dim=1).view(-1)
    assert torch.equal(zeroed, contribution <= 20)
    assert torch.equal(opt.zero_small_contribution(x, -grad, 20), out)   # |contribution|: sign does not matter


def test_clipping_transforms_set_pixels_to_the_mean_image(tiny):
    mean = torch.tensor(tiny.mean).view(1, 3, 1, 1)
    pixels = (mean + _pixels_with_norms(torch.arange(1.0, 101.0)) / 400).clamp(0, 1)
    ctx = opt.StepContext(tiny, pixels, None, None, None, 0)
    out = opt.clip_small_norm(50).after(pixels.clone(), ctx)
    at_mean = torch.isclose(out, mean.expand_as(out), atol=1e-7).all(dim=1).view(-1)
    assert int(at_mean.sum()) == 50


def test_blur_every_k_blurs_only_on_every_kth_update(tiny):
    x = torch.rand(1, 3, 8, 8)
    t = opt.blur_every(3, 1.0)
    assert torch.equal(t.after(x, opt.StepContext(tiny, x, None, None, None, 0)), x)
    assert not torch.equal(t.after(x, opt.StepContext(tiny, x, None, None, None, 2)), x)


# --- the loop ---------------------------------------------------------------------------------------

def _score(tiny):
    return cw.class_score(tiny, "star")


@pytest.mark.parametrize("optimizer,lr", [("sgd", 30.0), ("normalized", 0.02), ("adam", 0.05), ("lbfgs", 0.1)])
def test_every_optimizer_raises_the_objective(tiny, optimizer, lr):
    ascent = cw.Ascent(tiny, _score(tiny), start="noise", optimizer=optimizer, lr=lr, steps=5)
    ascent.run()
    assert ascent.history[-1] > ascent.history[0] + 0.01


@pytest.mark.parametrize("param", ["fourier", "decorrelated"])
def test_fourier_parameterizations_raise_the_objective_and_stay_in_range(tiny, param):
    ascent = cw.Ascent(tiny, _score(tiny), start="noise", param=param, lr=0.05, steps=6)
    last = ascent.run()
    assert ascent.history[-1] > ascent.history[0]
    assert 0 <= float(last.pixels.min()) and float(last.pixels.max()) <= 1


@pytest.mark.parametrize("param", ["fourier", "decorrelated"])
def test_fourier_parameterizations_start_at_the_given_image(tiny, param):
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 0.8 + 0.1
    first = next(cw.Ascent(tiny, _score(tiny), init=image, param=param).steps())
    torch.testing.assert_close(first.pixels, image, atol=1e-4, rtol=0)


def test_step_value_is_the_objective_at_the_step_pixels(tiny):
    obj = _score(tiny) - 1e-2 * cw.l2()
    steps = list(cw.Ascent(tiny, obj, start="noise", steps=3, lr=0.1).steps())
    assert [s.index for s in steps] == [0, 1, 2] and [s.done for s in steps] == [False, False, True]
    with torch.no_grad():
        x = tiny.normalize(steps[1].pixels)
        expected = tiny.module(x)[0, 2] - 1e-2 * x.pow(2).sum()
    assert steps[1].value == pytest.approx(float(expected), abs=1e-5)
    assert set(steps[1].terms) == {"class_score(star)", "l2"}
    assert steps[1].logits.shape == (1, 3)


def test_minimize_lowers_the_objective(tiny):
    ascent = cw.Ascent(tiny, _score(tiny), start="noise", steps=5, maximize=False)
    ascent.run()
    assert ascent.history[-1] < ascent.history[0]


def test_stop_when_ends_at_the_first_step_it_holds(tiny):
    steps = list(cw.Ascent(tiny, _score(tiny), start="noise", steps=50, stop_when=lambda ctx: ctx.step == 3).steps())
    assert len(steps) == 4 and steps[-1].done and steps[-1].index == 3


def test_pixels_stay_in_range_with_all_transforms(tiny):
    transforms = [opt.jitter(2), opt.blur_every(2, 0.5), opt.clip_small_norm(10), opt.clip_small_contribution(10)]
    ascent = cw.Ascent(tiny, _score(tiny), start="noise", transforms=transforms, optimizer="sgd", lr=50.0, steps=5)
    last = ascent.run()
    assert 0 <= float(last.pixels.min()) and float(last.pixels.max()) <= 1
    assert last.image().dtype == np.uint8 and last.image().shape == (16, 16, 3)


def test_same_seed_same_run(tiny):
    def run():
        return cw.Ascent(tiny, _score(tiny), start="noise", transforms=[opt.jitter(3)], steps=4, seed=7).run().pixels
    assert torch.equal(run(), run())


def test_init_image_and_size(tiny):
    image = np.full((40, 40, 3), 200, np.uint8)
    first = next(cw.Ascent(tiny, _score(tiny), init=image, size=12).steps())
    assert first.pixels.shape == (1, 3, 12, 12)
    assert float(first.pixels.mean()) == pytest.approx(200 / 255, abs=1e-3)
    with pytest.raises(ValueError, match="normalized model input"):
        cw.Ascent(tiny, _score(tiny), init=torch.full((1, 3, 16, 16), -2.0)).run()


def test_nan_objective_raises_a_clear_error_after_the_good_steps(tiny):
    bad = Objective(lambda ctx: ctx.logits[:, 0].sum() / (0.0 if ctx.step == 2 else 1.0) * 0.0 + (
        torch.tensor(float("nan")) if ctx.step == 2 else ctx.logits[:, 0].sum()), name="flaky")
    seen = []
    with pytest.raises(opt.AscentDiverged, match="step 2.*Lower the step size"):
        for step in cw.Ascent(tiny, bad, start="noise", steps=5).steps():
            seen.append(step.index)
    assert seen == [0, 1]


def test_bad_arguments_name_the_fix(tiny):
    with pytest.raises(TypeError, match="Objective"):
        cw.Ascent(tiny, lambda ctx: 0)
    with pytest.raises(ValueError, match="start must be one of"):
        cw.Ascent(tiny, _score(tiny), start="ones")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        cw.Ascent(tiny, _score(tiny), optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps must be"):
        cw.Ascent(tiny, _score(tiny), steps=0)
    with pytest.raises(ValueError, match="lr"):
        cw.Ascent(tiny, _score(tiny), lr=-1)
    with pytest.raises(ValueError, match="param='pixels'"):
        cw.Ascent(tiny, _score(tiny), param="fourier", transforms=[opt.blur_every(2, 1.0)])
    with pytest.raises(ValueError, match="no layer named"):
        cw.Ascent(tiny, cw.channel("conv9", 0)).run()


# --- hooks and model state ---------------------------------------------------------------------------

def _state(vm):
    return ([m.training for m in vm.module.modules()], [p.requires_grad for p in vm.module.parameters()])


@pytest.mark.parametrize("how", ["run", "closed", "error"])
def test_hooks_and_model_state_restored(tiny, no_hooks_left, how):
    tiny.module.train()
    before = _state(tiny)
    ascent = cw.Ascent(tiny, cw.channel("2", 1) + cw.deepdream("0"), start="noise", steps=5)
    if how == "run":
        ascent.run()
    elif how == "closed":
        gen = ascent.steps()
        next(gen)
        assert tiny.module[0]._forward_hooks and not tiny.module.training   # hooked and frozen while running
        gen.close()
    else:
        boom = Objective(lambda ctx: 1 / 0 if ctx.step == 1 else ctx.acts["0"].sum(), layers=["0"])
        with pytest.raises(ZeroDivisionError):
            cw.Ascent(tiny, boom, start="noise", steps=5).run()
    no_hooks_left(tiny)
    assert _state(tiny) == before
    tiny.module.eval()


def test_runs_inside_no_grad(tiny):
    with torch.no_grad():
        ascent = cw.Ascent(tiny, _score(tiny), start="noise", steps=3)
        ascent.run()
    assert ascent.history[-1] > ascent.history[0]


def test_hand_written_optimizers_take_the_textbook_steps():
    g = torch.tensor([[0.5, -2.0, 0.0, 4.0]])
    for cls, expected in [(opt.PlainStep, -0.1 * g), (opt.NormalizedStep, -0.1 * g / 1.625),
                          (opt.SignStep, -0.1 * torch.sign(g)), (opt.AdamStep, -0.1 * torch.sign(g))]:   # Adam's first step: lr * sign(grad)
        p = torch.zeros(1, 4, requires_grad=True)
        p.grad = g.clone()
        cls([p], 0.1).step()
        torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=0)
