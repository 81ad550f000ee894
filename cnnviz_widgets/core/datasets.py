"""Image collections for the last-layer views: a folder, a list, an array, tensors or generated shapes.

    data = image_dataset("shapes", n=2000, seed=0)        # generated, with labels and object masks
    data = image_dataset("~/pets")                        # one sub-folder per class
    data = image_dataset(images_uint8, labels=y, class_names=names)

A folder is read lazily (one file per access); everything else is held as one uint8 array.
Files in a folder that are not images are skipped and counted (``data.skipped``), never fatal.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .images import ImageError, load_image, to_array

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}


class ImageDataset:
    """Images with integer labels and class names; ``len``, ``data[i] -> (uint8 image, label)``."""

    def __init__(self, images, labels, class_names: Sequence[str], masks=None, skipped: int = 0,
                 source: str = "images"):
        self._images = images  # uint8 (N, H, W, 3) array, or a list of file paths (lazy)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = [str(c) for c in class_names]
        self.masks = masks
        self.skipped = skipped
        self.source = source
        self._thumbs: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.image(index), int(self.labels[index])

    def __repr__(self) -> str:
        skipped = f", {self.skipped} non-image files skipped" if self.skipped else ""
        return f"ImageDataset({len(self)} images from {self.source}, {len(self.class_names)} classes{skipped})"

    @property
    def lazy(self) -> bool:
        return not isinstance(self._images, np.ndarray)

    @property
    def images(self):
        """The uint8 (N, H, W, 3) array, or the list of file paths of a folder data set."""
        return self._images

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 (H, W, 3)."""
        index = _check_index(index, len(self))
        item = self._images[index]
        return item if not self.lazy else to_array(item)

    def label_name(self, index: int) -> str:
        return self.class_names[int(self.labels[index])]

    def thumbnails(self, size: int = 32) -> np.ndarray:
        """Every image centre-cropped to a square and resized to ``size`` px: uint8 (N, size, size, 3)."""
        if size not in self._thumbs:
            out = np.empty((len(self), size, size, 3), np.uint8)
            for i in range(len(self)):
                out[i] = thumbnail(self.image(i), size)
            self._thumbs[size] = out
        return self._thumbs[size]


def thumbnail(image: np.ndarray, size: int) -> np.ndarray:
    """One uint8 image -> a centre-cropped square of ``size`` px."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    if side != size:
        square = square.resize((size, size), resample=Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(square)


def image_dataset(source, labels=None, class_names=None, *, n: int = 1000, seed: int = 0) -> ImageDataset:
    """A labelled image collection from a folder, a list of images, an array/tensor, or ``"shapes"``.

    ``"shapes"`` draws ``n`` generated images (``make_shapes(n, seed)``; masks kept in ``.masks``).
    A folder holds one sub-folder per class (the sub-folder name is the class name).

        data = image_dataset("shapes", n=500, seed=1)
        data.thumbnails(32).shape          # (500, 32, 32, 3)
    """
    if isinstance(source, ImageDataset):
        return source
    if isinstance(source, str) and source == "shapes":
        return _shapes(n, seed)
    if isinstance(source, (str, os.PathLike)):
        return _folder(Path(source).expanduser())
    array = _as_uint8_batch(source)
    return _from_array(array, labels, class_names)


# --- sources -----------------------------------------------------------------------------------

def _shapes(n: int, seed: int) -> ImageDataset:
    from .shapes import SHAPE_CLASSES, make_shapes

    if int(n) < 1:
        raise ValueError(f"image_dataset('shapes', n=...) needs n >= 1 images, got n={n}")
    batch = make_shapes(int(n), seed=int(seed))
    return ImageDataset(batch.images, batch.labels, SHAPE_CLASSES, masks=batch.masks,
                        source=f"make_shapes(n={n}, seed={seed})")


def _folder(root: Path) -> ImageDataset:
    if not root.exists():
        raise ValueError(f"no such folder: {root}")
    if not root.is_dir():
        raise ValueError(f"{root} is a file; image_dataset() takes a folder with one sub-folder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels, skipped = [], [], 0
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.is_dir() or path.name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES and _readable(path):
                paths.append(path)
                labels.append(label)
            else:
                skipped += 1
    if not paths:
        raise ValueError(
            f"no images found in {root} ({skipped} other files skipped); expected one sub-folder per class "
            f"holding image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return ImageDataset(paths, labels, classes, skipped=skipped, source=str(root))


def _readable(path: Path) -> bool:
    """A cheap header check, so a folder with a corrupt or mislabelled file does not fail later."""
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # PIL raises many kinds for a non-image; all mean "skip it"
        return False


def _from_array(array: np.ndarray, labels, class_names) -> ImageDataset:
    n = len(array)
    if labels is None:
        labels = np.zeros(n, np.int64)
        class_names = class_names or ["unlabelled"]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{n} images but labels of shape {labels.shape}; pass one integer label per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers (class indices), got dtype {labels.dtype}")
    count = int(labels.max()) + 1 if n else 0
    if labels.min() < 0:
        raise ValueError("labels must be >= 0 (class indices)")
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(count)]
    if len(names) < count:
        raise ValueError(f"labels go up to {count - 1} but only {len(names)} class names were given")
    return ImageDataset(array, labels, names, source=f"an array of {n} images")


def _as_uint8_batch(source) -> np.ndarray:
    """(N, H, W, 3) uint8 from an array, a tensor (N, 3, H, W) / (N, H, W, 3) or a list of images."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("the image list is empty; pass at least one image")
        arrays = [to_array(img) for img in source]
        if len({a.shape for a in arrays}) > 1:
            size = min(min(a.shape[:2]) for a in arrays)
            arrays = [thumbnail(a, size) for a in arrays]  # one common square size
        return np.stack(arrays)
    if type(source).__module__.startswith("torch"):
        source = source.detach().cpu().numpy()
    if not isinstance(source, np.ndarray):
        raise TypeError(
            f"image_dataset() takes a folder path, 'shapes', a list of images or an (N, H, W, 3) array; "
            f"got {type(source).__name__}"
        )
    if source.ndim != 4:
        raise ValueError(f"an image batch must be 4-D (N, H, W, 3) or (N, 3, H, W); got shape {source.shape}")
    if len(source) == 0:
        raise ValueError("the image array is empty (N = 0); pass at least one image")
    if source.shape[-1] != 3 and source.shape[1] == 3:
        source = np.moveaxis(source, 1, -1)
    if source.shape[-1] != 3:
        raise ValueError(f"images need 3 colour channels; got shape {source.shape}")
    if source.dtype != np.uint8:
        try:
            return np.stack([to_array(img) for img in source])
        except ImageError as err:
            raise ValueError(f"cannot use the image batch: {err}") from None
    return np.ascontiguousarray(source)


def _check_index(index, n: int) -> int:
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"an image index is an int, not {type(index).__name__}")
    if not -n <= int(index) < n:
        raise IndexError(f"image index {int(index)} is out of range for a data set of {n} images")
    return int(index) % n
