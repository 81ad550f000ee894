"""Feature vectors of many images: the "last layer" the lecture reads with nearest neighbours and t-SNE.

    feats = extract_features(model, data)                 # (N, D): the penultimate vector (AlexNet FC7)
    feats = extract_features(model, data, layer="layer3") # a conv layer: global-average-pooled to (N, C)

Images stream through the model in batches under ``torch.inference_mode``; only the (N, D) result
is kept, never the activations of a whole data set. ``feature_steps`` is the same work as a
generator (one step per batch), so a widget can show progress and stop, keeping what it has.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch

from .datasets import ImageDataset
from .hooks import capture, frozen
from .models import as_model


class FeatureStep(NamedTuple):
    """One batch done: ``features`` holds the rows computed so far (a view of the final array)."""

    done: int
    total: int
    features: np.ndarray


def extract_features(model, images, layer: str | None = None, batch_size: int = 64, progress=None) -> np.ndarray:
    """The feature vector of every image, float32 (N, D).

    ``layer=None`` takes the model's penultimate vector (the input of ``model.feature_layer``, e.g.
    AlexNet's FC7 or ResNet's pooled 512-d vector). Any other layer gives its output; a 4-D
    output (N, C, H, W) is global-average-pooled to (N, C), so every layer gives one vector per image.
    ``images``: an ``image_dataset``, an (N, H, W, 3) uint8 array, a list of images, or a
    preprocessed (N, 3, H, W) float tensor. ``progress(done, total)`` is called after each batch.

        feats = extract_features(model, image_dataset("shapes", n=500))
        feats.shape                        # (500, 128)
    """
    step = None
    for step in feature_steps(model, images, layer=layer, batch_size=batch_size):
        if progress is not None:
            progress(step.done, step.total)
    return step.features


def feature_steps(model, images, layer: str | None = None, batch_size: int = 64) -> Iterator[FeatureStep]:
    """``extract_features`` one batch at a time; stop early and ``step.features`` keeps the rows done."""
    vm = as_model(model)
    name, inputs = feature_layer(vm, layer)
    total = count_images(images)
    batch_size = _check_batch_size(batch_size)
    out = None
    done = 0
    with frozen(vm), torch.inference_mode(), capture(vm, name, inputs=inputs) as rec:
        for x in input_batches(vm, images, batch_size):
            vm.module(x)
            vectors = pooled(rec[name])
            if out is None:
                out = np.empty((total, vectors.shape[1]), np.float32)
            out[done:done + len(vectors)] = vectors.float().cpu().numpy()
            done += len(vectors)
            yield FeatureStep(done, total, out[:done])


def feature_layer(vm, layer: str | None) -> tuple[str, bool]:
    """(layer name, read its input?) for a requested layer; None = the model's penultimate vector."""
    if layer is None or layer == vm.feature_layer and vm.feature_input:
        if vm.feature_layer is None:
            raise ValueError(f"{vm.name} has no default feature layer; pass layer='<name>' (cw.list_layers(model))")
        return vm.feature_layer, bool(vm.feature_input)
    return layer, False


def pooled(activation: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> global average (N, C); (N, D) as is; anything else flattened per image."""
    if activation.ndim == 4:
        return activation.mean(dim=(2, 3))
    return activation.reshape(len(activation), -1)


# --- images in batches -------------------------------------------------------------------------

def count_images(images) -> int:
    """How many images ``input_batches`` will give; an empty collection is an error."""
    if isinstance(images, (ImageDataset, list, tuple, np.ndarray, torch.Tensor)):
        n = len(images)
    else:
        raise TypeError(
            f"expected images as an image_dataset, an (N, H, W, 3) array, a list or an (N, 3, H, W) tensor; "
            f"got {type(images).__name__}"
        )
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim != 4:
        raise ValueError(f"a batch of images is 4-D (N, H, W, 3) or (N, 3, H, W); got shape {tuple(images.shape)}")
    if n == 0:
        raise ValueError("no images were given (an empty data set); pass at least one image")
    return n


def input_batches(vm, images, batch_size: int) -> Iterator[torch.Tensor]:
    """Preprocessed (B, 3, H, W) batches on the model's device, in order."""
    source = images.images if isinstance(images, ImageDataset) else images
    n = count_images(images)
    for start in range(0, n, batch_size):
        chunk = source[start:start + batch_size]
        if isinstance(chunk, torch.Tensor) and chunk.is_floating_point() and chunk.shape[1] == 3:
            yield vm.to_input(chunk)  # already preprocessed, as in captum
        elif isinstance(chunk, np.ndarray) and _at_input_size(vm, chunk):
            yield _fast_preprocess(vm, chunk)
        else:
            yield vm.to_input(list(chunk))


def _at_input_size(vm, chunk: np.ndarray) -> bool:
    """uint8 (B, H, W, 3) already at the model's input size: preprocessing is only scale + normalize."""
    h, w = vm.input_size
    no_resize = vm.resize_size in (None, min(h, w))
    return chunk.dtype == np.uint8 and chunk.ndim == 4 and chunk.shape[1:] == (h, w, 3) and no_resize


def _fast_preprocess(vm, chunk: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(np.ascontiguousarray(chunk)).to(vm.device).permute(0, 3, 1, 2)
    return vm.normalize(pixels.float().div_(255))


def _check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)
