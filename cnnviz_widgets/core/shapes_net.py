"""``ShapesNet``: the CNN shipped in ``cnnviz_widgets/data/shapes_net.pt``, trained on ``make_shapes`` images
(by ``scripts/train_shapes.py``); ``load_shapes_net`` returns it ready to use, no download needed.

Apart from the data set (``shapes.py``, torch-free) so that drawing shapes never imports torch.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .shapes import MEAN, SHAPE_CLASSES, STD

__all__ = ["ShapesNet", "load_shapes_net", "weights_path", "to_tensor"]


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
