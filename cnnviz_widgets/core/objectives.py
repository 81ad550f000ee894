"""What gradient ascent maximizes: objectives that add and scale (as in Lucid).

    obj = cw.class_score(model, "black swan") - 1e-3 * cw.l2()
    obj = 0.5 * cw.channel("layer3", 7) + cw.deepdream("layer4")

An ``Objective`` turns a ``StepContext`` (the image, the model input, the logits and the captured
activations of one forward pass; see ``core.optimize``) into a scalar summed over the batch.
Each leaf also records its own value in ``ctx.terms`` so loss curves can show the parts.

The penalties ``l2`` and ``total_variation`` are computed on the model input ``ctx.input`` (the image I
as the network sees it: normalized, so zero is the mean image and "start from zeros" starts there).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

Tensor = torch.Tensor


class Objective:
    """A scalar to MAXIMIZE, computed from a StepContext; supports ``a + b``, ``a - b``, ``k * a``, ``-a``, ``a / k``."""

    def __init__(self, fn: Callable[..., Tensor], layers: Iterable[str] = (), name: str = "",
                 leaf: bool = True):
        self.fn = fn
        self.layers = frozenset(layers)
        self.name = name or getattr(fn, "__name__", "objective")
        self._leaf = leaf

    def __call__(self, ctx) -> Tensor:
        value = self.fn(ctx)
        if self._leaf and hasattr(ctx, "terms"):
            ctx.terms[self.name] = float(value.detach())
        return value

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    # --- arithmetic ----------------------------------------------------------------------------
    def __add__(self, other) -> "Objective":
        other = _as_objective(other)
        name = f"{self.name} - {other.name[1:]}" if other.name.startswith("-") else f"{self.name} + {other.name}"
        return Objective(lambda ctx: self(ctx) + other(ctx), self.layers | other.layers, name, leaf=False)

    def __radd__(self, other) -> "Objective":
        return _as_objective(other) + self

    def __sub__(self, other) -> "Objective":
        return self + (-1.0) * _as_objective(other)

    def __rsub__(self, other) -> "Objective":
        return _as_objective(other) - self

    def __mul__(self, k) -> "Objective":
        if isinstance(k, Objective):
            return Objective(lambda ctx: self(ctx) * k(ctx), self.layers | k.layers,
                             f"({self.name}) * ({k.name})", leaf=False)
        k = _scalar(k)
        inner = self.name[1:] if self.name.startswith("-") else self.name
        sign = "-" if (k < 0) != self.name.startswith("-") else ""
        name = f"{sign}{inner}" if abs(k) == 1 else f"{sign}{abs(k):g} * {inner}"
        return Objective(lambda ctx: k * self(ctx), self.layers, name, leaf=False)

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return (-1.0) * self

    def __truediv__(self, k) -> "Objective":
        return self * (1.0 / _scalar(k))


def _scalar(k) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"an objective can be scaled by a number, not by {type(k).__name__}")
    return float(k)


def _as_objective(x) -> Objective:
    if isinstance(x, Objective):
        return x
    k = _scalar(x)
    return Objective(lambda ctx: torch.tensor(k), name=f"{k:g}", leaf=False)


# --- the objectives of the lecture ---------------------------------------------------------------

def class_score(model, target) -> Objective:
    """The score of one class before the softmax, S_c(I) (summed over the batch). A list of classes scores
    image i of the batch for class i (one batch makes a picture per class).

        obj = cw.class_score(model, "black swan") - 1e-3 * cw.l2()
    """
    from .models import as_model  # local: keeps this module light

    vm = as_model(model)
    if isinstance(target, (list, tuple)):
        return _class_scores(vm, target)
    index = vm.class_index(target)  # ValueError with close matches for an unknown name
    return Objective(lambda ctx: ctx.logits[:, index].sum(), name=f"class_score({vm.class_names[index]})")


def _class_scores(vm, targets) -> Objective:
    indices = torch.tensor([vm.class_index(t) for t in targets])

    def fn(ctx):
        if ctx.logits.shape[0] != len(indices):
            raise ValueError(f"{len(indices)} classes need a batch of {len(indices)} images, got {ctx.logits.shape[0]}; "
                             f"pass batch={len(indices)} (or init with that many images)")
        return ctx.logits.gather(1, indices.to(ctx.logits.device).view(-1, 1)).sum()
    names = ", ".join(vm.class_names[int(i)] for i in indices)
    return Objective(fn, name=f"class_score([{names}])")


def channel(layer: str, index: int) -> Objective:
    """The mean activation of one channel (feature map) of a layer with spatial output.

        obj = cw.channel("features.conv3", 7)
    """
    index = _index(index, "channel")

    def fn(ctx):
        act = _spatial(ctx, layer, "a channel objective")
        return act[:, _checked(act, index, layer)].mean(dim=(1, 2)).sum()
    return Objective(fn, [layer], f"channel({layer}, {index})")


def neuron_objective(layer: str, channel: int, y: int | None = None, x: int | None = None) -> Objective:
    """One unit: channel ``channel`` at position (y, x) of ``layer`` (the centre if y/x are None).
    A layer without spatial output (e.g. a Linear) takes no position: its unit ``channel`` is used.

        obj = cw.neuron_objective("layer3", 7)             # centre neuron of channel 7
    """
    channel = _index(channel, "channel")

    def fn(ctx):
        act = ctx.acts[layer]
        if act.ndim == 2 and y is None and x is None:
            return act[:, _checked(act, channel, layer)].sum()
        act = _spatial(ctx, layer, "a neuron at a position (y, x)")
        h, w = act.shape[-2:]
        yy, xx = (h // 2 if y is None else y), (w // 2 if x is None else x)
        if not (0 <= yy < h and 0 <= xx < w):
            raise ValueError(f"position (y={yy}, x={xx}) is outside {layer}'s {h}x{w} map; use 0..{h - 1}, 0..{w - 1}")
        return act[:, _checked(act, channel, layer), yy, xx].sum()
    where = "" if y is None and x is None else f", y={y}, x={x}"
    return Objective(fn, [layer], f"neuron({layer}, {channel}{where})")


def deepdream(layer: str) -> Objective:
    """DeepDream: 0.5 * sum of squared activations, so the gradient reaching the layer equals its activation.

        dream = cw.Ascent(model, cw.deepdream("layer3"), init=image, optimizer="normalized").run()
    """
    return Objective(lambda ctx: 0.5 * ctx.acts[layer].pow(2).sum(), [layer], f"deepdream({layer})")


def l2() -> Objective:
    """||I||_2^2: the sum of squared model-input values (zero is the mean image). Use as ``- 1e-3 * cw.l2()``."""
    return Objective(lambda ctx: ctx.input.pow(2).sum(), name="l2")


def total_variation() -> Objective:
    """Sum over the model input of squared differences between vertical and horizontal neighbours:
    sum (I[y+1,x] - I[y,x])^2 + sum (I[y,x+1] - I[y,x])^2. Use as a penalty: ``- 1e-2 * cw.total_variation()``."""
    def fn(ctx):
        x = ctx.input
        return (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum()
    return Objective(fn, name="total_variation")


# --- helpers -----------------------------------------------------------------------------------

def _index(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an int >= 0, got {value!r}")
    return int(value)


def _spatial(ctx, layer: str, what: str) -> Tensor:
    act = ctx.acts[layer]
    if act.ndim != 4:
        raise ValueError(
            f"layer {layer!r} has no spatial output (its output has shape {tuple(act.shape)}); {what} needs "
            "a conv layer with (N, C, H, W) output. Pick a conv layer (cw.list_layers(model) shows shapes), "
            "or use cw.class_score / cw.neuron_objective(layer, unit) for a vector layer."
        )
    return act


def _checked(act: Tensor, index: int, layer: str) -> int:
    if index >= act.shape[1]:
        raise ValueError(f"layer {layer!r} has {act.shape[1]} channels; index {index} is out of range (0..{act.shape[1] - 1})")
    return index
