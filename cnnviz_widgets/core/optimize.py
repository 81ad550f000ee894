"""The one optimization loop: gradient ascent on an image (class/neuron visualization, fooling, DeepDream,
and style transfer all run it with different objectives, parameterizations and transforms).

    ascent = Ascent(model, class_score(model, "circle") - 1e-3 * l2(), transforms=[blur_every(4, 0.5)])
    for step in ascent.steps():          # Step(index, value, pixels, terms, done, logits)
        ...                              # draw step.pixels; break at any time (hooks, model restored)
    final = ascent.run()                 # or run to the end

Each step: forward the current image, evaluate the objective, backprop to the pixels, yield the Step
(value and pixels belong together: the value is the objective AT those pixels), then update the image
and apply the between-step transforms. The last step (or the first one where ``stop_when`` holds) has
``done=True`` and is not followed by an update.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .hooks import capture, frozen
from .models import VisionModel, as_model
from .objectives import Objective

Tensor = torch.Tensor
STARTS = ("zeros", "noise", "image")
PARAMS = ("pixels", "fourier", "decorrelated")
OPTIMIZERS = ("sgd", "normalized", "sign", "adam", "lbfgs")


class AscentDiverged(RuntimeError):
    """The objective became NaN or infinite; the steps made before are kept by whoever consumed them."""


@dataclass
class StepContext:
    """What an Objective sees at one step (one forward pass)."""

    model: VisionModel
    pixels: Tensor            # (N, 3, H, W) in [0, 1], the image being optimized (before jitter)
    input: Tensor             # the normalized model input (after the ``before`` transforms such as jitter)
    logits: Tensor            # model output
    acts: object              # a capture Recording: acts[layer] / acts.activations[layer]
    step: int
    terms: dict = field(default_factory=dict)   # leaf objective values, filled while evaluating
    grad: Tensor | None = None  # d objective / d pixels after backward (pixel parameterization)


@dataclass
class Step:
    """One step of the loop, for display: cheap CPU copies, no graph."""

    index: int
    value: float              # the objective at ``pixels`` (as defined, whatever ``maximize`` is)
    pixels: Tensor            # (N, 3, H, W) detached CPU copy in [0, 1]; uint8: (pixels * 255).round().byte()
    terms: dict = field(default_factory=dict)   # named leaf values, e.g. {"class_score(circle)": 9.1, "l2": 40.2}
    done: bool = False        # True on the last step (steps exhausted, or stop_when held)
    logits: Tensor | None = None  # (N, classes) detached CPU copy

    def image(self, i: int = 0) -> np.ndarray:
        """Image ``i`` of the batch as uint8 (H, W, 3)."""
        return to_uint8_image(self.pixels[i])


def to_uint8_image(pixels: Tensor) -> np.ndarray:
    """(3, H, W) pixels in [0, 1] -> uint8 (H, W, 3)."""
    return pixels.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


# --- the loop ------------------------------------------------------------------------------------

class Ascent:
    """Gradient ascent on an image: an iterator of Steps (``steps()``) and a one-liner (``run()``).

        ascent = cw.Ascent(model, cw.class_score(model, "star") - 1e-3 * cw.l2(), steps=100)
        last = ascent.run(); picture = last.image()

    ``init``: image(s) to start from (anything ``load_image`` takes, a list, or a float tensor of pixels in
    [0, 1] shaped (3, H, W) / (N, 3, H, W)); without it ``start`` says "noise" (faint noise around the mean
    image, the default) or "zeros" (model input 0 = the mean image, the lecture's start; a ValueError explains
    when no first-layer ReLU fires there and the gradient is exactly zero). ``param``: "pixels" (plain), "fourier" or "decorrelated"
    (Fourier + decorrelated colours, Lucid-style). ``transforms``: see ``jitter``, ``blur_every``,
    ``clip_small_norm``, ``clip_small_contribution``. ``optimizer``: "sgd", "normalized" (step = lr * g /
    mean|g|, DeepDream's), "sign" (lr * sign(g), iterative FGSM), "adam", "lbfgs" or a callable ``params -> torch.optim.Optimizer``.
    ``maximize=False`` minimizes the objective instead (e.g. a style-transfer loss). ``batch``: how many
    images a zeros/noise start makes (e.g. one per class of ``class_score(model, [list of classes])``).
    """

    def __init__(self, model, objective: Objective, *, init=None, size=None, start: str = "noise",
                 param: str = "pixels", transforms: Sequence = (), lr: float = 0.05,
                 optimizer="adam", steps: int = 200, seed: int = 0, batch: int = 1,
                 stop_when: Callable[[StepContext], bool] | None = None, maximize: bool = True):
        self.model = as_model(model)
        if not isinstance(objective, Objective):
            raise TypeError(f"objective must be an Objective (e.g. cw.class_score(model, 3)), not {type(objective).__name__}")
        _check_choice("start", start, STARTS)
        _check_choice("param", param, PARAMS)
        if not callable(optimizer):
            _check_choice("optimizer", optimizer, OPTIMIZERS)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr (the step size) must be a positive number, got {lr!r}")
        self.objective, self.init, self.start, self.param = objective, init, start, param
        self.transforms = [as_transform(t) for t in transforms]
        if param != "pixels" and any(t.edits_pixels for t in self.transforms):
            raise ValueError(f"transforms that edit pixels between steps (blur, clipping) need param='pixels', not {param!r}; "
                             "use jitter() or penalties (l2, total_variation) with a Fourier parameterization")
        self.size = None if size is None else _pair(size)
        self.lr, self.optimizer, self.n_steps, self.seed, self.batch = float(lr), optimizer, steps, seed, batch
        self.stop_when, self.maximize = stop_when, maximize
        self.history: list[float] = []

    def run(self) -> Step:
        """Run all steps; return the last one (``self.history`` holds every value)."""
        last = None
        for last in self.steps():
            pass
        return last

    def steps(self) -> Iterator[Step]:
        """The generator: hooks and the frozen model live only while it runs (released on close/error)."""
        self.history = []
        rng = torch.Generator().manual_seed(int(self.seed))
        image = make_image(self.param, self._initial_pixels(rng), rng)
        opt = self._make_optimizer(image.parameters())
        with frozen(self.model), capture(self.model, sorted(self.objective.layers)) as rec:
            for i in range(self.n_steps):
                ctx, loss = self._evaluate(image, rec, i, rng)
                if i == 0:
                    self._check_not_stuck(ctx)
                done = i == self.n_steps - 1 or (self.stop_when is not None and bool(self.stop_when(ctx)))
                self.history.append(float(ctx.value))
                yield _make_step(ctx, done)
                if done:
                    return
                self._update(image, opt, ctx, loss, rec, rng)

    # --- one step ----------------------------------------------------------------------------
    def _evaluate(self, image, rec, i: int, rng) -> tuple[StepContext, Tensor]:
        """Forward, objective, backward; the context holds the value and d objective / d pixels."""
        vm = self.model
        for p in image.parameters():
            p.grad = None
        with torch.enable_grad():
            pixels = image.pixels()
            x = pixels
            for t in self.transforms:
                x = t.before(x, rng)
            inp = vm.normalize(x)
            ctx = StepContext(vm, pixels, inp, vm.module(inp), rec, i)
            value = self.objective(ctx)
            if value.ndim != 0:
                raise ValueError(f"objective {self.objective.name} gave shape {tuple(value.shape)}; it must return a scalar")
            if not torch.isfinite(value):
                raise AscentDiverged(
                    f"the objective {self.objective.name} became {float(value.detach())} at step {i}; the image made so far "
                    f"is kept. Lower the step size (lr={self.lr:g}) or add a penalty such as - 1e-3 * cw.l2().")
            loss = -value if self.maximize else value
            loss.backward()
        ctx.value = value.detach()
        ctx.grad = image.objective_grad(self.maximize)
        return ctx, loss.detach()

    def _check_not_stuck(self, ctx: StepContext) -> None:
        """A flat start can leave every first-layer ReLU silent: the gradient is then exactly zero and no
        step would ever change the image. Say so instead of returning a flat grey picture."""
        if self.init is None and self.start == "zeros" and ctx.grad is not None and not ctx.grad.any():
            raise ValueError(
                f"the gradient of {self.objective.name} is exactly zero at the all-zeros (mean) image: no ReLU of "
                f"{self.model.name}'s first layers fires on a flat picture, so gradient ascent cannot move. "
                "Start from faint noise instead: start='noise'.")

    def _update(self, image, opt, ctx, loss, rec, rng) -> None:
        first = [True]

        def closure():  # L-BFGS re-evaluates; the first call of a step reuses the evaluation already made
            if first[0]:
                first[0] = False
                return loss
            return self._evaluate(image, rec, ctx.step, rng)[1]
        opt.step(closure)
        with torch.no_grad():
            image.after(self.transforms, ctx)

    # --- set-up ------------------------------------------------------------------------------
    def _make_optimizer(self, params):
        if callable(self.optimizer):
            return self.optimizer(params)
        if self.optimizer == "lbfgs":  # torch.optim's first use imports torch._dynamo (seconds): only here
            return torch.optim.LBFGS(params, lr=self.lr, max_iter=20, history_size=10)
        steps = {"sgd": PlainStep, "normalized": NormalizedStep, "sign": SignStep, "adam": AdamStep}
        return steps[self.optimizer](params, self.lr)

    def _initial_pixels(self, rng) -> Tensor:
        vm = self.model
        if self.init is not None or self.start == "image":
            if self.init is None:
                raise ValueError("start='image' needs init=<an image>; or use start='zeros' / 'noise'")
            pixels = as_pixels(vm, self.init)
            return pixels if self.size is None else resize_pixels(pixels, self.size)
        h, w = self.size or vm.input_size
        mean = torch.tensor(vm.mean).view(1, 3, 1, 1).expand(self.batch, 3, h, w)
        if self.start == "noise":
            mean = mean + 0.1 * torch.randn(self.batch, 3, h, w, generator=rng)
        return mean.clamp(0, 1).to(vm.device)


def _make_step(ctx: StepContext, done: bool) -> Step:
    return Step(ctx.step, float(ctx.value), ctx.pixels.detach().to("cpu", copy=True), dict(ctx.terms), done,
                ctx.logits.detach().to("cpu", copy=True))


# Small optimizers of our own: torch.optim.Optimizer imports torch._dynamo on first use, which costs
# seconds in every fresh kernel; these few lines do the same updates (descent on the loss).

class PlainStep:
    """Gradient descent: p -= lr * grad."""

    def __init__(self, params, lr: float):
        self.params, self.lr = list(params), float(lr)

    @torch.no_grad()
    def step(self, closure=None):
        for p in self.params:
            if p.grad is not None:
                p.sub_(self.direction(p, p.grad) * self.lr)

    def direction(self, p, grad):
        return grad


class NormalizedStep(PlainStep):
    """The step scaled per image by the mean |gradient| (DeepDream's update): pixels move by about ``lr``
    on average, whatever the model's gradient scale."""

    def direction(self, p, grad):
        dims = tuple(range(1, grad.ndim))
        return grad / grad.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)


class SignStep(PlainStep):
    """Every pixel moves by exactly ``lr`` along the sign of its gradient (iterative FGSM, Kurakin et al. 2016):
    the largest change after k steps is k * lr, so fooling images stay within a few grey levels."""

    def direction(self, p, grad):
        return grad.sign()


class AdamStep(PlainStep):
    """Adam (Kingma & Ba 2015) with bias correction, betas (0.9, 0.999), eps 1e-8."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr)
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        super().step()

    def direction(self, p, grad):
        i = next(k for k, q in enumerate(self.params) if q is p)
        b1, b2 = self.betas
        self.m[i].mul_(b1).add_(grad, alpha=1 - b1)
        self.v[i].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.m[i] / (1 - b1 ** self.t)
        v_hat = self.v[i] / (1 - b2 ** self.t)
        return m_hat / (v_hat.sqrt() + self.eps)


# --- images in -----------------------------------------------------------------------------------

def as_pixels(model, images) -> Tensor:
    """A float tensor in [0, 1] (3, H, W) or (N, 3, H, W) is used as pixels; anything else (path, PIL image,
    uint8 array, list) goes through the model's view (resize + centre crop). Returns (N, 3, H, W) on its device."""
    vm = as_model(model)
    if isinstance(images, Tensor) and images.is_floating_point() and images.ndim in (3, 4):
        pixels = images.detach().float()
        pixels = pixels.unsqueeze(0) if pixels.ndim == 3 else pixels
        if pixels.shape[1] != 3:
            raise ValueError(f"pixels must be shaped (N, 3, H, W); got {tuple(images.shape)}")
        if pixels.min() < -1e-3 or pixels.max() > 1 + 1e-3:
            raise ValueError("a float tensor init must hold pixels in [0, 1]; this one looks like a normalized model "
                             "input: pass model.denormalize(x) instead")
        return pixels.clamp(0, 1).to(vm.device)
    batch = list(images) if isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.ndim == 4) \
        else [images]
    arrays = np.stack([vm.view(img) for img in batch])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(255).to(vm.device)


def resize_pixels(pixels: Tensor, size) -> Tensor:
    """Bilinear resize of (N, 3, H, W) pixels to ``size`` (int or (H, W)); antialiased when shrinking."""
    size = _pair(size)
    if tuple(pixels.shape[-2:]) == size:
        return pixels
    return F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


# --- parameterizations ---------------------------------------------------------------------------

class PixelImage:
    """The image is the parameter: pixels in [0, 1], clamped after every update."""

    def __init__(self, pixels: Tensor):
        self.tensor = pixels.detach().clone().requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        return [self.tensor]

    def pixels(self) -> Tensor:
        return self.tensor

    def objective_grad(self, maximize: bool) -> Tensor | None:
        g = self.tensor.grad
        return None if g is None else (-g if maximize else g).detach()

    def after(self, transforms, ctx) -> None:
        data = self.tensor.data
        for t in transforms:
            data = t.after(data, ctx)
        self.tensor.data = data.clamp_(0, 1)


# Lucid's colour correlation (square root of the ImageNet colour covariance), columns normalized.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


class FourierImage:
    """The image as a 1/f-scaled Fourier spectrum (optionally in decorrelated colours), squashed by a sigmoid."""

    def __init__(self, pixels: Tensor, decorrelate: bool):
        n, _, h, w = pixels.shape
        self.size, self.decorrelate = (h, w), decorrelate
        fy = torch.fft.fftfreq(h).view(-1, 1)
        fx = torch.fft.rfftfreq(w).view(1, -1)
        self.scale = (1.0 / torch.sqrt(fy ** 2 + fx ** 2).clamp_min(1.0 / max(h, w))).to(pixels.device)
        logits = torch.logit(pixels.detach().clamp(1e-3, 1 - 1e-3))
        if decorrelate:
            logits = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_COLOR).to(pixels), logits)
        spectrum = torch.fft.rfft2(logits * 4.0, norm="ortho") / self.scale
        self.spectrum = torch.view_as_real(spectrum).contiguous().requires_grad_(True)

    def parameters(self) -> list[Tensor]:
        return [self.spectrum]

    def pixels(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0
        if self.decorrelate:
            x = torch.einsum("ij,njhw->nihw", _COLOR.to(x), x)
        return torch.sigmoid(x)

    def objective_grad(self, maximize: bool) -> None:
        return None

    def after(self, transforms, ctx) -> None:
        return None


def make_image(param: str, pixels: Tensor, rng=None):
    """The parameterization ``param`` ("pixels", "fourier", "decorrelated") starting at ``pixels``."""
    _check_choice("param", param, PARAMS)
    if param == "pixels":
        return PixelImage(pixels)
    return FourierImage(pixels, decorrelate=param == "decorrelated")


# --- transforms ------------------------------------------------------------------------------------

class Transform:
    """A step transform: ``before`` changes the image going into the model (differentiable, e.g. jitter);
    ``after`` edits the pixels between steps (no grad, e.g. blur, clipping); both identity by default."""

    edits_pixels = False

    def before(self, x: Tensor, rng) -> Tensor:
        return x

    def after(self, pixels: Tensor, ctx: StepContext) -> Tensor:
        return pixels

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class _Function(Transform):
    edits_pixels = True

    def __init__(self, fn):
        self.fn = fn

    def after(self, pixels, ctx):
        return self.fn(pixels)


def as_transform(t) -> Transform:
    """A Transform, or a plain callable ``pixels -> pixels`` applied between steps."""
    if isinstance(t, Transform):
        return t
    if callable(t):
        return _Function(t)
    raise TypeError(f"a transform is a Transform (e.g. blur_every(4, 0.5)) or a callable pixels -> pixels, not {type(t).__name__}")


class jitter(Transform):  # noqa: N801 - used like a function: jitter(4)
    """Shift the image by a random offset of up to ``pixels`` in x and y before each forward (wrapping around)."""

    def __init__(self, pixels: int = 4):
        self.pixels = int(pixels)

    def before(self, x, rng):
        if self.pixels <= 0:
            return x
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=rng).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


class blur_every(Transform):  # noqa: N801
    """Gaussian blur with ``sigma`` (pixels) after every ``k``-th update (Yosinski et al. 2015)."""

    edits_pixels = True

    def __init__(self, k: int = 4, sigma: float = 0.5):
        if k < 1 or sigma < 0:
            raise ValueError(f"blur_every needs k >= 1 and sigma >= 0, got k={k}, sigma={sigma}")
        self.k, self.sigma = int(k), float(sigma)

    def after(self, pixels, ctx):
        return gaussian_blur(pixels, self.sigma) if (ctx.step + 1) % self.k == 0 else pixels


class clip_small_norm(Transform):  # noqa: N801
    """Set pixels whose RGB norm (around the mean image) is below the ``percentile``-th percentile to the mean."""

    edits_pixels = True

    def __init__(self, percentile: float = 20.0):
        self.percentile = _percentile(percentile)

    def after(self, pixels, ctx):
        mean = _mean(ctx.model, pixels)
        return zero_small_norm(pixels - mean, self.percentile) + mean


class clip_small_contribution(Transform):  # noqa: N801
    """Set pixels whose contribution |sum_c x_c * dObjective/dx_c| is below the ``percentile``-th percentile to
    the mean image (x around the mean; the IMAGE gradient, never the model's parameter gradients)."""

    edits_pixels = True

    def __init__(self, percentile: float = 20.0):
        self.percentile = _percentile(percentile)

    def after(self, pixels, ctx):
        if ctx.grad is None:
            return pixels
        mean = _mean(ctx.model, pixels)
        return zero_small_contribution(pixels - mean, ctx.grad, self.percentile) + mean


# --- the regularizers as functions (tested on hand-made tensors) -------------------------------------

def gaussian_kernel(sigma: float, radius: int) -> Tensor:
    """1-D Gaussian weights exp(-k^2 / 2 sigma^2) for k in -radius..radius, summing to 1."""
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(k ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).float()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W), radius round(4 sigma), mirrored borders (d c b | a b c d | c b a)."""
    if sigma <= 0:
        return x
    n, c, h, w = x.shape
    radius = min(int(4 * sigma + 0.5), h - 1, w - 1)
    if radius < 1:
        return x
    g = gaussian_kernel(sigma, radius).to(x)
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def zero_small_norm(x: Tensor, percentile: float) -> Tensor:
    """(N, C, H, W): zero each pixel whose norm over channels is below the per-image ``percentile``."""
    return _zero_below(x, x.norm(dim=1), percentile)


def zero_small_contribution(x: Tensor, grad: Tensor, percentile: float) -> Tensor:
    """(N, C, H, W): zero each pixel whose |sum_c x_c * grad_c| is below the per-image ``percentile``."""
    return _zero_below(x, (x * grad).sum(dim=1).abs(), percentile)


def _zero_below(x: Tensor, score: Tensor, percentile: float) -> Tensor:
    if percentile <= 0:
        return x
    flat = score.flatten(1).float()
    threshold = torch.quantile(flat, percentile / 100.0, dim=1).view(-1, 1, 1)
    return x * (score >= threshold).unsqueeze(1).to(x.dtype)


# --- helpers --------------------------------------------------------------------------------------

def _mean(vm, like: Tensor) -> Tensor:
    return torch.tensor(vm.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def _percentile(p) -> float:
    if not isinstance(p, (int, float)) or not 0 <= p < 100:
        raise ValueError(f"percentile must be a number in [0, 100), got {p!r}")
    return float(p)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


def _check_choice(what: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, options))}; got {value!r}")
