"""Pictures as bytes: arrays to PNG/JPEG, heatmaps through a colormap, overlays and tile grids.

Pure numpy + PIL, so core results can be shown by widgets, saved to files or embedded as the
static PNG in a saved notebook, all through the same few functions.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Colormaps as 5-9 anchor colours, interpolated to 256 entries (no matplotlib needed).
_ANCHORS = {
    "viridis": [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
    "inferno": [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
    "jet": [(0, 0, 131), (0, 60, 255), (0, 255, 255), (255, 255, 0), (255, 60, 0), (128, 0, 0)],
    "hot": [(10, 0, 0), (230, 0, 0), (255, 210, 0), (255, 255, 255)],
    "gray": [(0, 0, 0), (255, 255, 255)],
    "coolwarm": [(59, 76, 192), (221, 221, 221), (180, 4, 38)],
}
COLORMAPS = tuple(_ANCHORS)


def colormap_table(name: str = "viridis") -> np.ndarray:
    """A (256, 3) uint8 lookup table."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    anchors = np.array(_ANCHORS[name], dtype=np.float64)
    xs = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, xs, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def normalize_map(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale to [0, 1] between lo and hi (default: the map's own min and max); a flat map gives zeros."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.nanmin(v) if lo is None else lo
    hi = np.nanmax(v) if hi is None else hi
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        return np.zeros_like(v)
    return np.clip((v - lo) / (hi - lo), 0, 1)


def heatmap(values: np.ndarray, cmap: str = "viridis", lo=None, hi=None) -> np.ndarray:
    """A 2-D map -> uint8 (H, W, 3) colours."""
    idx = (normalize_map(values, lo, hi) * 255).round().astype(np.uint8)
    return colormap_table(cmap)[idx]


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (H, W)."""
    h, w = size
    img = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), resample=Image.Resampling.BILINEAR))


def overlay(image: np.ndarray, values: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image (resizing the map to the image); uint8 (H, W, 3)."""
    image = np.asarray(image, dtype=np.uint8)
    values = np.asarray(values, dtype=np.float32)
    if values.shape != image.shape[:2]:
        values = resize_map(values, image.shape[:2])
    colours = heatmap(values, cmap).astype(np.float32)
    return (image * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """float [0, 1] or uint8 -> uint8, (H, W) or (H, W, 3)."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
    return arr


def encode(array: np.ndarray, fmt: str = "png", scale: int = 1, quality: int = 90) -> bytes:
    """uint8/float image array -> PNG or JPEG bytes; ``scale`` enlarges with nearest-neighbour (crisp pixels)."""
    img = Image.fromarray(to_uint8(array))
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), resample=Image.Resampling.NEAREST)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif fmt in ("jpeg", "jpg"):
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"format must be 'png' or 'jpeg', not {fmt!r}")
    return buf.getvalue()


def tile_grid(tiles: np.ndarray, columns: int | None = None, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """(N, h, w[, 3]) uint8 tiles -> one uint8 image laid out in a grid with ``pad`` pixels between."""
    tiles = to_uint8(tiles)
    if tiles.ndim == 3:
        tiles = np.repeat(tiles[..., None], 3, axis=-1)
    n, h, w, c = tiles.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = tiles[i]
    return grid


def tile_at(grid_shape, tile_hw, n: int, columns: int | None, x: int, y: int, pad: int = 1) -> int | None:
    """Which tile index lies at pixel (x, y) of a grid made by ``tile_grid`` (None between tiles)."""
    h, w = tile_hw
    columns = columns or int(np.ceil(np.sqrt(n)))
    q, dx = divmod(x - pad, w + pad)
    r, dy = divmod(y - pad, h + pad)
    index = r * columns + q
    if x < pad or y < pad or dx >= w or dy >= h or q >= columns or index >= n:
        return None
    return int(index)
