"""The embedded offline model "shapes": a synthetic data set and the small CNN trained on it.

``make_shapes`` draws labelled 64x64 RGB images, each holding one simple shape (circle,
triangle, star, ...) of random colour, size, rotation and position on a random textured
background, together with a boolean mask of the object's pixels.  Colour and background are
drawn independently of the label, so only the *shape* predicts the class: neighbours in pixel
space share colour and background, neighbours in the network's feature space share shape.
The masks give ground truth for pointing games with saliency maps and Grad-CAM.

``ShapesNet`` is the CNN shipped in ``cnnviz_widgets/data/shapes_net.pt`` (trained by
``scripts/train_shapes.py``); ``load_shapes_net`` returns it ready to use, no download needed.

Only torch, numpy and PIL are used here.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

__all__ = [
    "SHAPE_CLASSES",
    "IMAGE_SIZE",
    "MEAN",
    "STD",
    "SHAPES_LAYERS",
    "BACKGROUNDS",
    "ShapesBatch",
    "make_shapes",
    "ShapesNet",
    "load_shapes_net",
    "weights_path",
    "to_tensor",
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


# --------------------------------------------------------------------------------- model
def _block(
    i: int, cin: int, cout: int, k: int, pool: bool, stride: int = 1
) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = [
        (f"conv{i}", nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)),
        (f"bn{i}", nn.BatchNorm2d(cout)),
        (f"relu{i}", nn.ReLU()),
    ]
    if pool:
        layers.append((f"pool{i}", nn.MaxPool2d(2)))
    return layers


class ShapesNet(nn.Module):
    """Small CNN for the shapes data set.

    Input ``(N, 3, 64, 64)`` normalized with :data:`MEAN`/:data:`STD`; output logits
    ``(N, len(SHAPE_CLASSES))``.  Spatial sizes for a 64x64 input::

        features.conv1  32 filters 5x5, stride 2   -> 32x32, then bn1, relu1, pool1 -> 16x16
        features.conv2  64 filters 3x3             -> 16x16, then bn2, relu2, pool2 ->  8x8
        features.conv3 128 filters 3x3             ->  8x8,  then bn3, relu3
        features.conv4 128 filters 3x3             ->  8x8,  then bn4, relu4
        pool (global average) -> flatten -> classifier (Linear 128 -> classes)

    The stride-2 first layer keeps CPU training within a few minutes; 32 5x5 filters still
    make a readable filter grid.  The 128-d input of ``classifier`` is the feature vector.
    """

    def __init__(self, num_classes: int = len(SHAPE_CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                _block(1, 3, 32, 5, pool=True, stride=2)  # 16x16
                + _block(2, 32, 64, 3, pool=True)  # 8x8
                + _block(3, 64, 128, 3, pool=False)  # 8x8
                + _block(4, 128, 128, 3, pool=False)  # 8x8
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def weights_path() -> Path:
    """Location of the shipped ``shapes_net.pt`` state dict."""
    return Path(__file__).resolve().parent.parent / "data" / "shapes_net.pt"


def load_shapes_net(device=None) -> ShapesNet:
    """The trained :class:`ShapesNet` in eval mode (on ``device`` if given)."""
    net = ShapesNet()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    net.eval()
    if device is not None:
        net = net.to(device)
    return net


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` images -> float ``(N, 3, H, W)`` normalized with MEAN/STD."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std
