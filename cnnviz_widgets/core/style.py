"""Gram matrices, neural style transfer, texture synthesis and feature inversion (Gatys et al.).

Each layer gives a C x H x W tensor: an H x W grid of C-dimensional vectors. Reshaped to C x HW,
``G = F F^T / HW`` is the average outer product over positions: which channels fire together,
wherever they fire. Matching Gram matrices at several layers matches texture ("style"); matching
the features of one layer keeps the content. All three tasks are objectives run by the one
optimizer (``core.optimize.Ascent``), so they stream frames, report losses and stop cleanly.

    G = cw.gram_matrix(features)                                  # (C, H, W) -> (C, C)
    result = cw.style_transfer(content, style, steps=100)         # result.image: uint8 (H, W, 3)
    result = cw.texture_synthesis(cw.sample_images()["brick"])    # style loss only, from noise

Losses are relative, so their weights mean the same on any model: the content loss is
||F - P||^2 / ||P||^2 and each layer's style loss is ||G - A||^2 / ||A||^2 (targets P, A). A weight of
1 on each is a balanced start, whatever the magnitude of the model's activations.

Offline default (no ImageNet weights): VGG-16 with RANDOM weights (seed 0). Random conv features
still carry local texture statistics (Ustyuzhaninov et al. 2017; He et al. 2016), so textures and
stylizations stay recognisable; benchmarks/bench_style.py measures it against the shapes model.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .images import load_image
from .models import VisionModel, WeightsUnavailableError, as_model, load_model, with_module
from .objectives import Objective, total_variation

Tensor = torch.Tensor

MIN_SIZE = 32      # below this the deepest VGG style layer (relu4_1, 1/8 scale) has almost no positions
MAX_SIZE = 1024
OFFLINE_SEED = 0
EPS = 1e-12

# Gatys et al.: style at relu1_1 .. relu5_1 (we stop at relu4_1: cheaper, and enough on CPU), content at relu4_2.
_VGG_LAYERS = {
    "vgg16": {"content": "features.20", "style": ("features.1", "features.6", "features.11", "features.18")},
    "vgg19": {"content": "features.22", "style": ("features.1", "features.6", "features.11", "features.20")},
    "shapes": {"content": "features.relu3", "style": ("features.relu1", "features.relu2", "features.relu3")},
}
_VGG_NAMES = {"features.1": "relu1_1", "features.6": "relu2_1", "features.11": "relu3_1",
              "features.18": "relu4_1", "features.20": "relu4_2 (vgg16) / relu4_1 (vgg19)",
              "features.22": "relu4_2"}


# --- the Gram matrix and the losses, as plain functions ---------------------------------------------

def gram_matrix(features: Tensor) -> Tensor:
    """G = F F^T / (H W): channel co-occurrence averaged over positions. (C,H,W) -> (C,C), (N,C,H,W) -> (N,C,C).

        G = cw.gram_matrix(torch.rand(64, 32, 32))      # (64, 64), symmetric, G[i, i] = mean of F_i^2
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"gram_matrix takes a torch tensor (C, H, W) or (N, C, H, W), not {type(features).__name__}")
    if features.ndim not in (3, 4):
        raise ValueError(f"gram_matrix takes features (C, H, W) or (N, C, H, W); got shape {tuple(features.shape)}")
    flat = features.flatten(-2)                                   # (..., C, HW)
    if flat.ndim == 2:
        return _Gram.apply(flat) / flat.shape[-1]
    if flat.shape[0] == 1:  # squeeze, not unbind: unbind's backward stacks, a copy of the whole feature gradient
        return _Gram.apply(flat.squeeze(0)).unsqueeze(0) / flat.shape[-1]
    return torch.stack([_Gram.apply(f) for f in flat]) / flat.shape[-1]


class _Gram(torch.autograd.Function):
    """F F^T of one (C, HW) matrix with a one-product backward: G is symmetric, so dL/dF = (dG + dG^T) F.
    Autograd's own rule takes two products (one per factor), and a batched ``@`` (bmm) is several times
    slower than plain 2-D products on CPU: together this made style transfer's steps ~10% slower."""

    @staticmethod
    def forward(ctx, flat: Tensor) -> Tensor:
        ctx.save_for_backward(flat)
        return flat @ flat.T

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        flat, = ctx.saved_tensors
        sym = grad + grad.T
        if flat.stride(0) == 1 and flat.stride(1) != 1:  # channels-last features: F^T is the contiguous one
            return (flat.T @ sym).T  # = sym F, in F's layout, so it adds to the conv's gradient without a transpose
        return sym @ flat


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """||F - P||^2 / ||P||^2: how far the features are from the content image's features, relative to them."""
    _same_shape(features, target, "content features")
    return (features - target).pow(2).sum() / target.pow(2).sum().clamp_min(EPS)


def style_loss(features: Tensor, target_gram: Tensor) -> Tensor:
    """||G - A||^2 / ||A||^2 with G = gram_matrix(features) and A the style image's Gram matrix (summed over a batch)."""
    gram = gram_matrix(features)
    _same_shape(gram[0] if gram.ndim == 3 and target_gram.ndim == 2 else gram, target_gram, "Gram matrices")
    return (gram - target_gram).pow(2).sum() / target_gram.pow(2).sum().clamp_min(EPS)


def tv_loss(x: Tensor) -> Tensor:
    """Total variation per value: ``cw.total_variation()``'s sum of squared neighbour differences divided by
    the number of values in one image, so a TV weight means the same at every image size."""
    return _tv_sum(x) / x[0].numel()


def _tv_sum(x: Tensor) -> Tensor:
    return total_variation().fn(_InputOnly(x))


class _InputOnly:
    def __init__(self, x: Tensor):
        self.input = x


def _same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what} differ in shape: {tuple(a.shape)} vs target {tuple(b.shape)}; "
                         "compute the target with the same model, layer and image size")


# --- the same losses as Objectives (leaves named content / style / tv for the loss curves) -------------

def content_objective(layer: str, target: Tensor) -> Objective:
    """Content loss at ``layer`` against target features (a loss: minimize it)."""
    target = target.detach()
    return Objective(lambda ctx: content_loss(ctx.acts[layer], target), [layer], "content")


def style_objective(targets: dict[str, Tensor], weights: dict[str, float] | None = None) -> Objective:
    """Weighted sum over layers of the style loss against each layer's target Gram matrix (mean of the weights = 1)."""
    targets = {k: v.detach() for k, v in targets.items()}
    weights = _layer_weights(list(targets), weights)
    total = sum(weights.values()) or 1.0

    def fn(ctx):
        return sum(w * style_loss(ctx.acts[k], targets[k]) for k, w in weights.items()) * (len(weights) / total)
    return Objective(fn, list(targets), "style")


def tv_objective() -> Objective:
    """Total variation of the model input per value (see ``tv_loss``): smooths high-frequency noise."""
    return Objective(lambda ctx: tv_loss(ctx.input), name="tv")


def _layer_weights(layers: list[str], weights) -> dict[str, float]:
    if weights is None:
        return {k: 1.0 for k in layers}
    if isinstance(weights, dict):
        unknown = set(weights) - set(layers)
        if unknown:
            raise ValueError(f"style weights name layers that are not style layers: {sorted(unknown)}; style layers: {layers}")
        return {k: float(weights.get(k, 0.0)) for k in layers}
    weights = list(weights)
    if len(weights) != len(layers):
        raise ValueError(f"{len(weights)} style weights for {len(layers)} style layers {layers}; give one per layer")
    return dict(zip(layers, map(float, weights)))


# --- the model and its layers ------------------------------------------------------------------------

def style_model(model="vgg16") -> tuple[VisionModel, str]:
    """The model for style work and a note saying which it is. "vgg16"/"vgg19" (or None) use ImageNet weights
    when they are available; offline they fall back to RANDOM-weight VGG-16 (seed 0), labelled as such.

        vm, note = style_model("vgg16")     # note: 'offline: random-weight VGG-16 (seed 0) ...' without weights
    """
    if model is None or (isinstance(model, str) and model in ("vgg16", "vgg19")):
        name = model or "vgg16"
        try:
            if _surely_offline(name):  # skip building the 138M-parameter model only to find no weights
                raise WeightsUnavailableError(name)
            vm = load_model(name)
            return vm, f"{name} · ImageNet weights"
        except WeightsUnavailableError:
            return offline_vgg16(), (f"offline: random-weight VGG-16 (seed {OFFLINE_SEED}); {name} ImageNet weights are not "
                        "available. Random conv features still match texture, so results stay recognisable.")
    vm = as_model(model)
    return vm, vm.label


def _surely_offline(name: str) -> bool:
    """CNNVIZ_OFFLINE is set and torch's hub cache lacks the weights file: load_model would raise anyway."""
    import os

    import torchvision

    from .models import hub_checkpoint_path

    if os.environ.get("CNNVIZ_OFFLINE", "") in ("", "0"):
        return False
    return not hub_checkpoint_path(torchvision.models.get_model_weights(name).DEFAULT).exists()


@functools.lru_cache(maxsize=1)
def offline_vgg16() -> VisionModel:
    """The offline default: the conv layers (``features``) of VGG-16 with torchvision's random init, seed 0.

    Built once per session and without the classifier, whose 120M random weights take seconds to draw and
    which style work never uses (so the draw differs from ``load_model("vgg16", weights=None)``, which also
    draws the classifier; the init scheme is the same). Runs restore the model's state, so sharing it is safe.
    """
    from torchvision.models.vgg import cfgs, make_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(OFFLINE_SEED)
        features = make_layers(cfgs["D"])
        for m in features.modules():
            if isinstance(m, nn.Conv2d):  # VGG.__init__'s init, in the same order
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
    module = nn.Sequential(OrderedDict(features=features)).eval()
    return VisionModel(module=module, name="vgg16", class_names=[], input_size=(224, 224), weights="random",
                       filter_layer="features.0", cam_layer="features.28", feature_layer=None)


def default_layers(vm: VisionModel) -> tuple[str, tuple[str, ...]]:
    """(content layer, style layers): Gatys et al.'s VGG layers, or for another model evenly spaced conv outputs."""
    known = _VGG_LAYERS.get(vm.name)
    if known is not None:
        return known["content"], known["style"]
    from .layers import conv_layer_names

    convs = conv_layer_names(vm)
    if not convs:
        raise ValueError(f"{vm.name} has no Conv2d layer; style transfer needs a convolutional network")
    picks = sorted({convs[round(i * (len(convs) - 1) / 3)] for i in range(4)}, key=convs.index)
    return picks[-2] if len(picks) > 1 else picks[0], tuple(picks)


def layer_label(name: str) -> str:
    """'features.11' -> 'features.11 (relu3_1)' for VGG layers; other names unchanged."""
    extra = _VGG_NAMES.get(name)
    return f"{name} ({extra})" if extra else name


def trunk(vm: VisionModel, layers: Sequence[str]) -> VisionModel:
    """The same model cut after the deepest of ``layers`` when it is a ``features`` Sequential (VGG): the
    classifier and deeper convs would only cost time. Layer names stay the same ("features.11"). A cut made
    only of plain layers (conv, ReLU, pooling, batch norm) runs channels-last on CPU (see ``_ChannelsLast``)."""
    features = getattr(vm.module, "features", None)
    if not isinstance(features, nn.Sequential) or not all(k.startswith("features.") for k in layers):
        return vm
    names = [n for n, _ in features.named_children()]
    last = max(names.index(k.split(".", 1)[1]) for k in layers)
    cut = features[:last + 1]
    if not all(isinstance(m, _LAYOUT_FREE) for m in cut):
        return with_module(vm, nn.Sequential(OrderedDict(features=cut)))
    return with_module(vm, nn.Sequential(OrderedDict(layout=_ChannelsLast(), features=cut)))


# Layers that give the same values whatever the memory layout of their input (a custom block might .view() it).
_LAYOUT_FREE = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d, nn.Dropout, nn.Identity)


class _ChannelsLast(nn.Module):
    """Hands a CPU trunk its input channels-last (N, H, W, C in memory): oneDNN's convolutions and their
    backward run ~12% faster on it than on NCHW (VGG-16 to relu4_2, 256 px). Values and layer names are
    unchanged; the model's weights are not touched. Other devices get the input as it is (not measured there)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


# --- images in: sizes, grayscale, notes ----------------------------------------------------------------

def prepare_image(image, size: int, what: str, shape: tuple[int, int] | None = None) -> tuple[Tensor, list[str]]:
    """Any image -> (1, 3, H, W) pixels in [0, 1], its longer side = ``size`` (or exactly ``shape`` = (H, W),
    e.g. the style brought to the content's size), and notes saying what was changed."""
    _check_size(size)
    pil, notes = load_image(image), []
    if _is_gray(np.asarray(pil)):
        notes.append(f"{what} image is grayscale: used as RGB (the result takes its texture, not its colour)")
    w, h = pil.size
    new = (shape[1], shape[0]) if shape else _fit(w, h, size)
    if min(new) < MIN_SIZE:
        raise ValueError(f"the {what} image is {w}x{h}: too narrow for size {size} (shorter side < {MIN_SIZE}px); "
                         "crop it closer to square or raise size")
    if new != (w, h):
        why = " (it was tiny)" if max(w, h) < MIN_SIZE else " to match the content" if shape else ""
        notes.append(f"{what} image {w}x{h} resized to {new[0]}x{new[1]}{why}")
        pil = pil.resize(new, resample=_lanczos())
    return _to_pixels(pil), notes


def _fit(w: int, h: int, size: int) -> tuple[int, int]:
    scale = size / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _check_size(size) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an int between {MIN_SIZE} and {MAX_SIZE} pixels (the longer side); got {size!r}")


def _is_gray(arr: np.ndarray) -> bool:
    return bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))


def _to_pixels(pil) -> Tensor:
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float().div_(255).unsqueeze(0).contiguous()


def _lanczos():
    from PIL import Image
    return Image.Resampling.LANCZOS


# --- the three tasks: a setup, an Ascent, a steps generator, a one-liner -------------------------------

DEFAULT_SIZE = 128
LR = {"adam": 0.02, "lbfgs": 1.0}


@dataclass
class StyleSetup:
    """Everything a run needs, prepared once (fast): the model, the images as pixels, and notes to show."""

    model: VisionModel
    model_note: str
    content: Tensor | None          # (1, 3, H, W) in [0, 1]
    style: Tensor | None
    notes: list[str] = field(default_factory=list)


@dataclass
class StyleResult:
    """What ``style_transfer`` / ``texture_synthesis`` / ``feature_inversion`` return."""

    image: np.ndarray               # uint8 (H, W, 3)
    pixels: Tensor                  # (1, 3, H, W) in [0, 1]
    losses: list[dict]              # per step: {"loss": total, "content": .., "style": .., "tv": ..}
    notes: list[str]
    model: str


def prepare_style(content=None, style=None, model="vgg16", size: int = DEFAULT_SIZE) -> StyleSetup:
    """Load the model (ImageNet VGG, or the labelled offline default) and bring both images to ``size``
    (longer side), the style to the content's size; every change is described in ``notes``.

        setup = prepare_style(cw.sample_images()["cat"], cw.sample_images()["gravel"], size=128)
    """
    if content is None and style is None:
        raise ValueError("give a content image, a style image, or both")
    vm, model_note = style_model(model)
    content_px, notes = prepare_image(content, size, "content") if content is not None else (None, [])
    style_px = None
    if style is not None:
        shape = tuple(content_px.shape[-2:]) if content_px is not None else None
        style_px, style_notes = prepare_image(style, size, "style", shape)
        notes += style_notes
    return StyleSetup(vm, model_note, _on(content_px, vm), _on(style_px, vm), notes)


def transfer_ascent(setup: StyleSetup, *, content_layer=None, style_layers=None, weights=None,
                    content_weight: float = 1.0, style_weight: float = 10.0, tv_weight: float = 1e-3,
                    steps: int = 100, optimizer: str = "lbfgs", init: str = "content", lr=None, seed: int = 0):
    """The ``Ascent`` (minimizing content + style + TV) for a prepared setup; ``steps()`` yields frames.
    With content_weight=0 it synthesizes texture, with style_weight=0 it inverts features."""
    from .optimize import Ascent

    vm = setup.model
    default_content, default_style = default_layers(vm)
    content_layer = content_layer or default_content
    style_layers = tuple(style_layers or default_style)
    loss = _loss(setup, vm, content_layer, style_layers, weights, content_weight, style_weight, tv_weight)
    start = _start(setup, init, seed)
    cut = trunk(vm, sorted(loss.layers))
    return Ascent(cut, loss, init=start, optimizer=_optimizer(optimizer, lr), steps=steps, seed=seed,
                  lr=lr or LR[optimizer], maximize=False)


def style_transfer_steps(content, style, model="vgg16", *, size: int = DEFAULT_SIZE, **options) -> Iterator:
    """Steps of ``style_transfer`` (``core.optimize.Step``: index, value = total loss, pixels, terms)."""
    return transfer_ascent(prepare_style(content, style, model, size), **options).steps()


def style_transfer(content, style, model="vgg16", *, size: int = DEFAULT_SIZE, **options) -> StyleResult:
    """Paint ``content`` with the texture of ``style`` (Gatys et al.): content loss at one layer plus Gram-matrix
    style losses at several, from the content image, by L-BFGS (or "adam").

        result = cw.style_transfer(imgs["cat"], imgs["gravel"], size=128, steps=60)
        result.image   # uint8 (H, W, 3); result.losses; result.notes (resizes, offline model)
    """
    setup = prepare_style(content, style, model, size)
    return finish(setup, transfer_ascent(setup, **options).steps())


def texture_synthesis(style, model="vgg16", *, size: int = DEFAULT_SIZE, steps: int = 100, **options) -> StyleResult:
    """A new image with the style image's Gram matrices (its texture), from noise: style loss only.

        result = cw.texture_synthesis(cw.sample_images()["gravel"], size=96, steps=60)
    """
    setup = prepare_style(None, style, model, size)
    return finish(setup, texture_ascent(setup, steps=steps, **options).steps())


def texture_ascent(setup: StyleSetup, **options):
    """The Ascent of ``texture_synthesis`` (no content term, start from noise)."""
    options = {"init": "noise", "tv_weight": 0.0, **options}
    return transfer_ascent(setup, content_weight=0.0, **options)


def feature_inversion(model, image, layer: str | None = None, *, size: int | None = None, steps: int = 100,
                      **options) -> StyleResult:
    """An image whose features at ``layer`` match those of ``image``, from noise: content loss only.
    Shallow layers give the image back almost exactly; deep ones keep what the layer keeps.

        result = cw.feature_inversion(model, image, "features.relu2")
    """
    setup = prepare_style(image, None, model, size or max(as_model(model).input_size))
    return finish(setup, inversion_ascent(setup, layer, steps=steps, **options).steps())


def inversion_ascent(setup: StyleSetup, layer: str | None = None, **options):
    """The Ascent of ``feature_inversion`` (content loss at ``layer`` only, start from noise)."""
    options = {"init": "noise", "tv_weight": 1e-3, **options}
    return transfer_ascent(setup, content_layer=layer, style_weight=0.0, **options)


def finish(setup: StyleSetup, steps) -> StyleResult:
    """Run steps to the end and collect a StyleResult."""
    losses, last = [], None
    for last in steps:
        losses.append(step_losses(last))
    return StyleResult(last.image(), last.pixels, losses, list(setup.notes), setup.model_note)


def step_losses(step) -> dict:
    """{"loss": total, "content": .., "style": .., "tv": ..} of one Step (only the terms that were used)."""
    return {"loss": step.value, **{k: v for k, v in step.terms.items() if k in ("content", "style", "tv")}}


def _loss(setup, vm, content_layer, style_layers, weights, content_weight, style_weight, tv_weight) -> Objective:
    terms = []
    if content_weight and setup.content is not None:
        terms.append(float(content_weight) * content_objective(content_layer, _features(vm, setup.content, [content_layer])[content_layer]))
    if style_weight:
        if setup.style is None:
            raise ValueError("style_weight > 0 needs a style image")
        feats = _features(vm, setup.style, style_layers)
        terms.append(float(style_weight) * style_objective({k: gram_matrix(v) for k, v in feats.items()}, weights))
    if not terms:
        raise ValueError("nothing to optimize: give a content image with content_weight > 0 or a style image with style_weight > 0")
    if tv_weight:
        terms.append(float(tv_weight) * tv_objective())
    return sum(terms[1:], terms[0])


def _features(vm: VisionModel, pixels: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    from .hooks import capture, frozen

    cut = trunk(vm, layers)
    with torch.no_grad(), frozen(cut), capture(cut, list(layers)) as rec:
        cut.module(cut.normalize(pixels))
    return {k: rec[k].detach() for k in layers}


def _start(setup: StyleSetup, init: str, seed: int) -> Tensor:
    like = setup.content if setup.content is not None else setup.style
    if init == "content":
        if setup.content is None:
            raise ValueError("init='content' needs a content image; use init='noise'")
        return setup.content
    if init != "noise":
        raise ValueError(f"init must be 'content' or 'noise', not {init!r}")
    gen = torch.Generator().manual_seed(int(seed))
    return (0.4 + 0.2 * torch.rand(like.shape, generator=gen)).to(like.device)


def _optimizer(name: str, lr):
    if name == "adam":
        return "adam"
    if name == "lbfgs":  # one evaluation per step, so every step is a frame (Ascent's default does 20)
        rate = lr or LR["lbfgs"]
        return lambda params: torch.optim.LBFGS(params, lr=rate, max_iter=1, history_size=10)
    raise ValueError(f"optimizer must be 'lbfgs' or 'adam', not {name!r}")


def _on(pixels: Tensor | None, vm: VisionModel) -> Tensor | None:
    return None if pixels is None else pixels.to(vm.device)
