"""What an attribution explains: a class score (the logit, before softmax) or an intermediate neuron.

    cw.saliency(model, image)                            # the top-1 class
    cw.saliency(model, image, target="triangle")         # a class by name (or index)
    cw.guided_backprop(model, image, target=cw.neuron("features.conv3", 7))   # a channel
    cw.guided_backprop(model, image, target=cw.neuron("layer4", 7, y=3, x=4))  # one neuron

Every attribution method turns ``target`` into one scalar score per image through ``forward_scores``,
so they all accept the same targets.  For a batch, ``target`` may also be a sequence with one entry
per image (e.g. the true labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .hooks import capture
from .layers import get_layer


@dataclass(frozen=True)
class neuron:  # noqa: N801 -- lower case: used like a function, cw.neuron("layer4", 7)
    """An intermediate unit as a target: a channel of ``layer`` (mean over positions), or the single
    neuron at ``(y, x)`` of that channel when a position is given.

        cw.guided_backprop(model, image, target=cw.neuron("features.conv4", 12))
    """

    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def __post_init__(self):
        if not isinstance(self.layer, str):
            raise TypeError(f"neuron(layer, ...) takes a layer name (str), not {type(self.layer).__name__}")
        if (self.y is None) != (self.x is None):
            raise ValueError("give both y and x for one neuron, or neither for the whole channel")

    def score(self, activation: torch.Tensor) -> torch.Tensor:
        """(N,) scores from the layer's activation (N, C[, H, W])."""
        c = activation.shape[1]
        if not 0 <= self.channel < c:
            raise ValueError(f"channel {self.channel} is out of range: {self.layer} has {c} channels (0..{c - 1})")
        unit = activation[:, self.channel]
        if self.y is None:
            return unit.reshape(len(unit), -1).mean(1)
        if unit.ndim != 3 or not (0 <= self.y < unit.shape[1] and 0 <= self.x < unit.shape[2]):
            raise ValueError(f"position (y={self.y}, x={self.x}) is outside {self.layer}'s map of shape "
                             f"{tuple(unit.shape[1:])}")
        return unit[:, self.y, self.x]


def is_batch(images) -> bool:
    """True for inputs that are batches (4-D tensor or array, list): results keep the leading N."""
    if isinstance(images, (list, tuple)):
        return True
    return isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4


def check_target(vm, target) -> None:
    """Validate ``target`` before any compute (clear errors at the API boundary)."""
    if target is None:
        return
    if isinstance(target, neuron):
        get_layer(vm, target.layer)
        return
    for t in _as_list(target):
        vm.class_index(t)


def class_indices(vm, target, logits: torch.Tensor) -> torch.Tensor:
    """(N,) class indices: top-1 of ``logits`` for None, else the given class(es)."""
    n = logits.shape[0]
    if target is None:
        return logits.detach().argmax(1)
    items = _as_list(target)
    if len(items) == 1:
        items = items * n
    if len(items) != n:
        raise ValueError(f"{len(items)} targets were given for a batch of {n} images; give one or one per image")
    return torch.tensor([vm.class_index(t) for t in items], device=logits.device)


def forward_scores(vm, x: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model on ``x``; return (scores (N,), logits (N, K)). Class scores are logits, before softmax."""
    if isinstance(target, neuron):
        with capture(vm, target.layer) as rec:
            logits = vm.module(x)
        return target.score(rec[target.layer]), logits
    logits = vm.module(x)
    index = class_indices(vm, target, logits)
    return logits.gather(1, index[:, None])[:, 0], logits


def _as_list(target) -> list:
    if isinstance(target, (str, int, np.integer)):
        return [target]
    if isinstance(target, torch.Tensor):
        return [int(t) for t in target.reshape(-1)]
    if isinstance(target, (Sequence, np.ndarray)):
        return list(target)
    raise TypeError(f"target is None (top-1), a class index or name, a list of them, or cw.neuron(...); "
                    f"got {type(target).__name__}")
