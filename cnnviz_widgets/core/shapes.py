"""The embedded offline model "shapes": its synthetic data set (the CNN trained on it is in shapes_net.py).

``make_shapes`` draws labelled 64x64 RGB images, each holding one simple shape (circle,
triangle, star, ...) of random colour, size, rotation and position on a random textured
background, together with a boolean mask of the object's pixels.  Colour and background are
drawn independently of the label, so only the *shape* predicts the class: neighbours in pixel
space share colour and background, neighbours in the network's feature space share shape.
The masks give ground truth for pointing games with saliency maps and Grad-CAM.

The CNN trained on these images lives in ``shapes_net.py``. Only numpy and PIL are used here (no torch):
the Dashboard's image picker draws shapes before torch has been imported.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SHAPE_CLASSES",
    "IMAGE_SIZE",
    "MEAN",
    "STD",
    "SHAPES_LAYERS",
    "BACKGROUNDS",
    "ShapesBatch",
    "make_shapes",
]

#: Class names; ``labels[i]`` of a :class:`ShapesBatch` indexes this tuple.  Every class
#: stays distinguishable under any rotation (no square/diamond pairs).
SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "triangle",
    "square",
    "pentagon",
    "star",
    "cross",
    "ring",
    "crescent",
)

IMAGE_SIZE = 64

#: Per-channel normalization the network was trained with (``(x / 255 - MEAN) / STD``).
#: Measured on ``make_shapes(4000, seed=1)`` (0.500/0.498/0.499 and 0.256/0.256/0.255), rounded:
#: colours are uniform in RGB, so the statistics are the same for every channel.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.256, 0.256, 0.256)

#: Default layers of :class:`ShapesNet` for the widgets (dotted module names).
#: The feature vector is the *input* of ``feature_layer`` (the final Linear).
SHAPES_LAYERS: dict[str, str] = {
    "filter_layer": "features.conv1",
    "cam_layer": "features.conv4",
    "feature_layer": "classifier",
}

#: Background families, drawn uniformly and independently of the label.
BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "stripes", "checker", "blobs")

_SUPERSAMPLE = 4
_MIN_ACROSS = 14.0  # shape diameter (circumscribed circle) in pixels at size 64
_MAX_ACROSS = 34.0
_MIN_COLOR_DISTANCE = 90.0  # RGB distance between the shape colour and any background colour


class ShapesBatch(NamedTuple):
    """Images, labels and object masks from :func:`make_shapes`."""

    images: np.ndarray  # uint8 (n, size, size, 3)
    labels: np.ndarray  # int64 (n,), indexes SHAPE_CLASSES
    masks: np.ndarray  # bool (n, size, size), True exactly on the object's pixels


# ----------------------------------------------------------------------------- geometry
def _regular_polygon(k: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(k) / k - np.pi / 2
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(points)
    inn = _regular_polygon(points, inner, phase=np.pi / points)
    return np.stack([outer, inn], axis=1).reshape(-1, 2)


def _cross(half_width: float = 0.3) -> np.ndarray:
    w = half_width
    return np.array(
        [
            [-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w],
            [w, 1], [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w],
        ],
        dtype=float,
    ) / np.hypot(1.0, w)  # arm corners on the unit circle


_CIRCLE = _regular_polygon(96)
# Each class: list of (polygon in unit coordinates, fill) drawn in order; fill 0 cuts a hole.
# All fit inside the unit circle, so "across" = 2 * radius.
_GEOMETRY: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_CIRCLE, 255)],
    "triangle": [(_regular_polygon(3), 255)],
    "square": [(_regular_polygon(4), 255)],
    "pentagon": [(_regular_polygon(5), 255)],
    "star": [(_star(), 255)],
    "cross": [(_cross(), 255)],
    "ring": [(_CIRCLE, 255), (0.55 * _CIRCLE, 0)],
    "crescent": [(_CIRCLE, 255), (0.8 * _CIRCLE + np.array([0.0, -0.42]), 0)],
}
assert tuple(_GEOMETRY) == SHAPE_CLASSES


def _shape_alpha(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Antialiased coverage (float32 in [0, 1], shape (size, size)) of one random shape."""
    scale = size / IMAGE_SIZE
    radius = 0.5 * rng.uniform(_MIN_ACROSS, _MAX_ACROSS) * scale
    angle = rng.uniform(0.0, 2 * np.pi)
    margin = radius + 1.0
    cx, cy = rng.uniform(margin, size - margin, size=2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    s = _SUPERSAMPLE
    canvas = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(canvas)
    for poly, fill in _GEOMETRY[SHAPE_CLASSES[label]]:
        pts = (poly @ rot.T) * radius + (cx, cy)
        pts = pts * s  # pixel i spans [i, i + 1), i.e. [i * s, (i + 1) * s) supersampled
        draw.polygon([tuple(p) for p in pts], fill=fill)
    small = canvas.reduce(s)  # box filter: exact area coverage on the supersampled grid
    return np.asarray(small, dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------- backgrounds
def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    denom = float(ab @ ab)
    t = 0.0 if denom == 0 else float(np.clip((p - a) @ ab / denom, 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _background_colors(shape_color: np.ndarray, rng: np.random.Generator):
    """Two background colours whose every mixture stays far from the shape colour."""
    for _ in range(200):
        c1 = rng.uniform(0, 255, size=3)
        c2 = c1 + rng.uniform(0.3, 1.0) * (rng.uniform(0, 255, size=3) - c1)
        if _segment_distance(shape_color, c1, c2) >= _MIN_COLOR_DISTANCE + 15:
            return c1, c2
    # practically unreachable: fall back to the colour opposite the shape colour
    c = 255.0 - shape_color
    return c, c


def _smooth_field(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency random field in [0, 1] (bicubic upsampled random grid)."""
    grid = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    field = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
    f = np.asarray(field, dtype=np.float32)
    lo, hi = float(f.min()), float(f.max())
    return (f - lo) / max(hi - lo, 1.0)


def _background_weight(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Mixing weight in [0, 1] between the two background colours, per pixel."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    if kind == "gradient":
        w = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
        return w ** rng.uniform(0.5, 2.0)
    if kind == "noise":
        w = rng.uniform(0, 1, size=(size, size)).astype(np.float32)
        if rng.uniform() < 0.5:  # sometimes a little grainier than pure salt-and-pepper
            img = Image.fromarray((w * 255).astype(np.uint8)).resize(
                (size // 2, size // 2), Image.BILINEAR
            ).resize((size, size), Image.NEAREST)
            w = np.asarray(img, dtype=np.float32) / 255.0
        return w
    if kind == "stripes":
        period = rng.uniform(0.06, 0.25)
        sharp = rng.uniform(1.0, 6.0)
        return np.clip(0.5 + 0.5 * sharp * np.sin(2 * np.pi * u / period + rng.uniform(0, 7)), 0, 1)
    if kind == "checker":
        period = rng.uniform(0.1, 0.35)
        p1, p2 = rng.uniform(0, 7, size=2)
        s = np.sin(2 * np.pi * u / period + p1) * np.sin(2 * np.pi * v / period + p2)
        return np.clip(0.5 + 4.0 * s, 0, 1)
    if kind == "blobs":
        f = _smooth_field(size, int(rng.integers(3, 7)), rng)
        if rng.uniform() < 0.5:
            f = np.clip(0.5 + 5.0 * (f - 0.5), 0, 1)  # hard-edged blobs
        return f
    raise ValueError(kind)


# ---------------------------------------------------------------------------------- data
def make_shapes(n: int, seed: int = 0, size: int = IMAGE_SIZE) -> ShapesBatch:
    """Draw ``n`` labelled images of simple shapes with their object masks.

    Labels are balanced (counts differ by at most one) and shuffled.  Shape colour, size
    (about 14-34 px across at size 64), rotation, position (fully inside the image) and the
    background (family and colours) are drawn independently of the label.  The same
    ``(n, seed, size)`` always gives the same batch.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = np.random.default_rng([int(seed), 0x5A4E5])
    k = len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        alpha = _shape_alpha(int(labels[i]), size, rng)
        color = rng.uniform(0, 255, size=3)
        c1, c2 = _background_colors(color, rng)
        kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        w = _background_weight(kind, size, rng)[..., None]
        bg = c1 * (1.0 - w) + c2 * w
        a = alpha[..., None]
        img = bg * (1.0 - a) + color * a
        img += rng.normal(0.0, rng.uniform(0.0, 6.0), size=(size, size, 1))  # sensor grain
        images[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        masks[i] = alpha >= 0.5
    return ShapesBatch(images=images, labels=labels, masks=masks)
