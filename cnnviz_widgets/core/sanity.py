"""Sanity check for saliency methods (Adebayo et al. 2018): cascading weight randomization.

Re-initialize the layers one by one from the top (logits) down, on a deep copy of the model, and
compare each stage's map with the original one by the Spearman rank correlation of the absolute maps.
A map that explains the *model* must change when the weights are destroyed; a map that stays the same
is an edge detector of the input.

    stages = cw.sanity_check("grad_cam", model, image)
    [(s.layer, round(s.spearman, 2)) for s in stages]      # 'original' 1.0, 'classifier' ..., ...
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from . import attribution
from .hooks import frozen
from .models import as_model, with_module
from .targets import class_indices, is_batch

__all__ = ["sanity_check", "sanity_steps", "spearman", "METHODS", "SanityStage"]

METHODS: dict[str, Callable] = {
    "saliency": attribution.saliency,
    "smoothgrad": lambda model, image, target: attribution.saliency(model, image, target, smooth=10),
    "guided_backprop": attribution.guided_backprop,
    "grad_cam": attribution.grad_cam,
    "guided_grad_cam": attribution.guided_grad_cam,
}


class SanityStage(NamedTuple):
    """One randomization stage: every layer from the top down to ``layer`` has random weights."""

    index: int              # 0 = the original model
    layer: str              # the layer randomized last ('original' for stage 0)
    map: np.ndarray         # the method's map, (H, W)
    spearman: float         # rank correlation of |map| with |original map| (1.0 for stage 0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get their average rank). A constant map has no
    ranking at all; its correlation is reported as 0.

        spearman(np.arange(5), np.arange(5) ** 2)     # 1.0
    """
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inverse]).astype(np.float64)


def cascade_layers(module: torch.nn.Module) -> list[str]:
    """Modules that own parameters, from the top (last defined) down: the cascade order."""
    names = [n for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def sanity_steps(method, model, image, target=None, seed: int = 0, **options) -> Iterator[SanityStage]:
    """``sanity_check`` as a generator, one stage at a time (stage 0 = the original model).

        for stage in sanity_steps("saliency", model, image): show(stage.map)
    """
    fn = _method(method)
    vm = as_model(model)
    if is_batch(image):
        raise ValueError("sanity_check takes one image; pass images[i] rather than a batch")
    target = _fixed_target(vm, image, target)
    original = np.asarray(fn(vm, image, target=target, **options))
    yield SanityStage(0, "original", original, 1.0)
    module = copy.deepcopy(vm.module)  # never the user's model
    twin = with_module(vm, module)
    layers = dict(module.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, name in enumerate(cascade_layers(module), 1):
            _randomize(layers[name])
            current = np.asarray(fn(twin, image, target=target, **options))
            yield SanityStage(i, name, current, spearman(np.abs(original), np.abs(current)))


def sanity_check(method, model, image, target=None, seed: int = 0, **options) -> list[SanityStage]:
    """Cascading randomization from the top layer down; per stage the map and its Spearman rank
    correlation with the original map.  ``method``: "saliency", "smoothgrad", "guided_backprop",
    "grad_cam", "guided_grad_cam" or any callable ``f(model, image, target=...) -> map``.
    The target stays the original model's top-1 class (or the given one) at every stage.

        stages = cw.sanity_check("saliency", model, image)
        print([round(s.spearman, 2) for s in stages])
    """
    return list(sanity_steps(method, model, image, target, seed, **options))


def _randomize(module: torch.nn.Module) -> None:
    """Fresh random weights: the layer's own initializer, plus random affine terms for norm layers
    (whose initializer is the identity, which would not destroy anything)."""
    with torch.no_grad():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        for p in module.parameters(recurse=False):
            if isinstance(module, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)):
                p.normal_(0.0 if p is getattr(module, "bias", None) else 1.0, 0.5)
            elif not hasattr(module, "reset_parameters"):
                p.normal_(0.0, 0.05)


def _fixed_target(vm, image, target):
    if target is not None:
        return target
    with frozen(vm), torch.no_grad():
        return int(class_indices(vm, None, vm.module(vm.to_input(image)))[0])


def _method(method) -> Callable:
    if callable(method):
        return method
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)} or pass a function")
    return METHODS[method]
