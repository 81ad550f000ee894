"""The embedded "shapes" data set and model: the data mean what they claim, the weights work."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnviz_widgets.core import shapes, shapes_net
from cnnviz_widgets.core.shapes import IMAGE_SIZE, MEAN, SHAPE_CLASSES, SHAPES_LAYERS, STD, make_shapes
from cnnviz_widgets.core.shapes_net import ShapesNet, load_shapes_net, to_tensor, weights_path

K = len(SHAPE_CLASSES)
UNUSED_SEED = 2024  # training used seed 1, validation 2, the script's held-out check 12345


@pytest.fixture(scope="module")
def batch():
    return make_shapes(400, seed=7)


@pytest.fixture(scope="module")
def net():
    return load_shapes_net()


def test_constants():
    assert len(SHAPE_CLASSES) >= 8 and len(set(SHAPE_CLASSES)) == len(SHAPE_CLASSES)
    assert IMAGE_SIZE == 64
    assert len(MEAN) == 3 and len(STD) == 3 and all(s > 0 for s in STD)


def test_shapes_and_dtypes(batch):
    assert batch.images.shape == (400, 64, 64, 3) and batch.images.dtype == np.uint8
    assert batch.labels.shape == (400,) and batch.labels.dtype == np.int64
    assert batch.masks.shape == (400, 64, 64) and batch.masks.dtype == np.bool_
    assert batch.labels.min() >= 0 and batch.labels.max() < K
    images, labels, masks = make_shapes(3, seed=0, size=32)  # NamedTuple unpacks
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32)
    assert make_shapes(0).images.shape == (0, 64, 64, 3)


def test_deterministic_and_seed_dependent():
    a, b, c = make_shapes(24, seed=3), make_shapes(24, seed=3), make_shapes(24, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.masks, c.masks)


def test_labels_balanced():
    labels = make_shapes(8 * K + 3, seed=5).labels
    counts = np.bincount(labels, minlength=K)
    assert counts.max() - counts.min() <= 1
    assert not np.array_equal(labels[:K], np.arange(K))  # shuffled, not cycling


def test_masks_nonempty_and_sized(batch):
    area = batch.masks.sum(axis=(1, 2))
    # smallest: a 14 px crescent/triangle (tens of pixels); largest: a 34 px disc (~908 px)
    assert area.min() >= 30
    assert area.max() <= np.pi * 17.5**2
    extent = np.array(
        [max(np.ptp(np.nonzero(m.any(1))[0]), np.ptp(np.nonzero(m.any(0))[0])) + 1 for m in batch.masks]
    )
    assert extent.min() >= 8 and extent.max() <= 35
    assert np.median(extent) > 15  # sizes really spread over the range
    # fully inside: never touches the border
    assert not batch.masks[:, 0, :].any() and not batch.masks[:, -1, :].any()
    assert not batch.masks[:, :, 0].any() and not batch.masks[:, :, -1].any()


def _erode(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e


def test_masks_mark_the_object(batch):
    """Inside the mask the colour is flat (the shape's); the background differs from it."""
    img = batch.images.astype(np.float64)
    checked = 0
    for i in range(len(img)):
        inner = _erode(batch.masks[i])
        if inner.sum() < 10:
            continue
        checked += 1
        inside = img[i][inner]
        assert inside.std(axis=0).max() < 15, i  # flat colour + mild grain
        outside = img[i][~batch.masks[i]]
        # every background pixel is far from the shape colour (contrast is guaranteed)
        dist = np.linalg.norm(outside - inside.mean(axis=0), axis=1)
        assert np.percentile(dist, 5) > 50, i
    assert checked > 300


def test_colour_does_not_predict_class():
    b = make_shapes(1600, seed=11)
    colour = np.stack([b.images[i][b.masks[i]].mean(axis=0) for i in range(len(b.labels))])
    bg = np.stack([b.images[i][~b.masks[i]].mean(axis=0) for i in range(len(b.labels))])
    feats = np.concatenate([colour, bg], axis=1)
    tr, te = slice(0, 1000), slice(1000, None)
    centroids = np.stack([feats[tr][b.labels[tr] == k].mean(axis=0) for k in range(K)])
    # class means of the shape colour are all near mid-grey, i.e. alike
    assert np.abs(centroids[:, :3] - centroids[:, :3].mean(axis=0)).max() < 25
    pred = np.argmin(((feats[te][:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    acc = (pred == b.labels[te]).mean()
    assert acc < 0.25, acc  # chance is 1/K = 0.125


def test_weights_file_small_and_safe():
    path = weights_path()
    assert path.is_file() and path.stat().st_size <= 5 * 1024 * 1024
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == set(ShapesNet().state_dict())


def test_architecture(net):
    modules = dict(net.named_modules())
    first = modules[SHAPES_LAYERS["filter_layer"]]
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == 3
    assert first.out_channels >= 32
    convs = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0] == SHAPES_LAYERS["filter_layer"] and convs[-1] == SHAPES_LAYERS["cam_layer"]
    fc = modules[SHAPES_LAYERS["feature_layer"]]
    assert isinstance(fc, torch.nn.Linear) and fc.out_features == K
    assert not any(isinstance(m, torch.nn.ReLU) and m.inplace for m in net.modules())
    assert not net.training

    seen = {}
    hooks = [
        modules[SHAPES_LAYERS["cam_layer"]].register_forward_hook(
            lambda m, i, o: seen.__setitem__("cam", o.shape)
        ),
        fc.register_forward_hook(lambda m, i, o: seen.__setitem__("feat", i[0].shape)),
    ]
    with torch.no_grad():
        out = net(torch.zeros(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert out.shape == (2, K)
    assert tuple(seen["cam"][-2:]) == (8, 8)
    assert seen["feat"] == (2, fc.in_features)


def test_to_tensor_normalizes():
    x = to_tensor(np.full((1, 4, 4, 3), 255, dtype=np.uint8))
    assert x.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [(1 - m) / s for m, s in zip(MEAN, STD)], rtol=1e-6)


def test_shipped_weights_accuracy(net):
    torch.manual_seed(0)
    b = make_shapes(1000, seed=UNUSED_SEED)
    with torch.no_grad():
        pred = torch.cat([net(x) for x in to_tensor(b.images).split(250)]).argmax(1).numpy()
    acc = (pred == b.labels).mean()
    assert acc >= 0.97, acc
    per_class = [(pred[b.labels == k] == k).mean() for k in range(K)]
    assert min(per_class) >= 0.9, dict(zip(SHAPE_CLASSES, per_class))


def test_module_has_no_widget_imports():
    for module in (shapes, shapes_net):
        with open(module.__file__, encoding="utf-8") as f:
            src = f.read()
        assert "ipywidgets" not in src.split('"""', 2)[-1], module.__name__


def test_drawing_shapes_does_not_import_torch():
    """The Dashboard's image picker draws shapes while torch is still loading in the background."""
    code = ("import sys; from cnnviz_widgets.core.shapes import make_shapes; make_shapes(8, seed=1); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
