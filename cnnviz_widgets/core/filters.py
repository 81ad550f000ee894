"""First-layer filters: the weights of the first conv, shown as small RGB pictures."""
from __future__ import annotations

import numpy as np
import torch

from .layers import get_layer
from .models import as_model
from .render import tile_grid


def first_layer_filters(model, layer: str | None = None) -> torch.Tensor:
    """The conv weights (out_channels, in_channels, kh, kw) of ``layer`` (default: the first conv).

        w = cw.first_layer_filters(cw.load_model("alexnet"))   # (64, 3, 11, 11)
    """
    vm = as_model(model)
    name = layer or vm.filter_layer
    if name is None:
        raise ValueError(f"{vm.name} has no Conv2d layer; first_layer_filters needs a convolutional network")
    conv = get_layer(vm, name)
    if not isinstance(conv, torch.nn.Conv2d):
        raise ValueError(f"layer {name!r} is a {type(conv).__name__}, not a Conv2d; pick a conv layer "
                         f"(cw.list_layers(model, torch.nn.Conv2d) lists them)")
    return conv.weight.detach().cpu().clone()


def filter_tiles(weights: torch.Tensor, normalize: str = "per_filter") -> np.ndarray:
    """Weights (O, I, kh, kw) -> uint8 tiles in [0, 255].

    With 3 input channels each filter is an RGB tile (O, kh, kw, 3); otherwise every
    (filter, input channel) slice is a grayscale tile (O * I, kh, kw). ``normalize`` is
    "per_filter" (each tile stretched to its own min..max, the usual way to see its pattern)
    or "global" (one scale for all, so strong and weak filters can be compared).
    """
    w = weights.detach().float().cpu().numpy()
    if normalize not in ("per_filter", "global"):
        raise ValueError(f"normalize must be 'per_filter' or 'global', not {normalize!r}")
    if w.shape[1] == 3:
        tiles = np.moveaxis(w, 1, -1)  # (O, kh, kw, 3)
    else:
        tiles = w.reshape(-1, *w.shape[2:])  # (O*I, kh, kw)
    axes = tuple(range(1, tiles.ndim))
    if normalize == "per_filter":
        lo, hi = tiles.min(axis=axes, keepdims=True), tiles.max(axis=axes, keepdims=True)
    else:
        lo, hi = tiles.min(), tiles.max()
    scaled = (tiles - lo) / np.maximum(hi - lo, 1e-12)
    return (scaled * 255).round().astype(np.uint8)


def filter_grid_image(model, layer: str | None = None, normalize: str = "per_filter",
                      scale: int | None = None, max_tiles: int = 512) -> np.ndarray:
    """The filters of ``layer`` laid out in one uint8 grid image, each tile enlarged ``scale`` times."""
    tiles = filter_tiles(first_layer_filters(model, layer), normalize)[:max_tiles]
    k = tiles.shape[1]
    scale = scale or max(1, 24 // k)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    return tile_grid(tiles, pad=max(1, scale // 2))
