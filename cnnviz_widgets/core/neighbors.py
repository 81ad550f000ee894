"""Exact L2 nearest neighbours, in feature space or in pixel space (the lecture's last-layer slide).

    nn = nearest_neighbors(query_images, data, k=8, space="feature", model=model)
    nn.indices[0], nn.distances[0]       # the 8 gallery images closest to the first query

Squared distances come from ``||q||^2 - 2 q.g + ||g||^2``: one matrix product per chunk of queries,
so the cost is the BLAS floor. That expansion loses digits when two vectors are close (it can even go
slightly negative), so it only picks candidates: the best ``k + margin`` per query are re-scored
exactly as ``||q - g||^2`` and ordered by (distance, gallery index). Equal distances therefore
always come back in index order, and the answer is the brute-force one.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .datasets import ImageDataset
from .features import count_images, extract_features, input_batches

SPACES = ("feature", "pixel")
MARGIN = 8            # extra candidates re-scored exactly, to absorb rounding of the expansion
CHUNK_ELEMENTS = 2**26  # query-chunk x gallery entries held at once (256 MiB in float32): big GEMMs


class Neighbors(NamedTuple):
    """Result of ``nearest_neighbors``: ``indices`` (Q, k) into the gallery, L2 ``distances`` (Q, k)."""

    indices: np.ndarray
    distances: np.ndarray
    space: str


def nearest_neighbors(query, gallery, k: int = 8, space: str = "feature", model=None, layer: str | None = None,
                      batch_size: int = 64) -> Neighbors:
    """The ``k`` gallery items nearest to each query under the L2 distance, nearest first.

    ``query``/``gallery`` are either vectors (a 2-D float array or tensor, used as they are) or images
    (an ``image_dataset``, an (N, H, W, 3) array, a list, or one image as the query). Images become
    vectors in the chosen ``space``: "feature" = ``extract_features(model, ..., layer)``, "pixel" = the
    preprocessed model input flattened (without a model: the uint8 pixels / 255 flattened).

        nn = nearest_neighbors(data.images[:5], data, k=8, space="pixel", model=model)
        nn.indices.shape                   # (5, 8)
    """
    if space not in SPACES:
        raise ValueError(f"space must be 'feature' or 'pixel', not {space!r}")
    q = vectors(query, space, model, layer, batch_size, role="query")
    g = vectors(gallery, space, model, layer, batch_size, role="gallery")
    return knn(q, g, k, space)


def knn(query: torch.Tensor, gallery: torch.Tensor, k: int, space: str = "feature") -> Neighbors:
    """Exact L2 k-nearest neighbours of 2-D ``query`` rows among 2-D ``gallery`` rows."""
    query, gallery = _check_vectors(query, gallery, k)
    gallery_sq = gallery.pow(2).sum(1)
    chunk = max(1, CHUNK_ELEMENTS // len(gallery))
    found = [_knn_chunk(query[s:s + chunk], gallery, gallery_sq, k) for s in range(0, len(query), chunk)]
    indices = torch.cat([i for i, _ in found]).cpu().numpy()
    distances = torch.cat([d for _, d in found]).sqrt().cpu().numpy()
    return Neighbors(indices, distances, space)


def _knn_chunk(q: torch.Tensor, gallery, gallery_sq, k: int):
    # ||q||^2 is the same for every gallery item of a row, so ranking needs only ||g||^2 - 2 q.g
    scores = torch.addmm(gallery_sq, q, gallery.T, alpha=-2)
    width = min(k + MARGIN, len(gallery))
    approx, cand = scores.topk(width, dim=1, largest=False, sorted=True)
    exact = (q[:, None, :] - gallery[cand]).pow(2).sum(-1)
    indices, dist = _ordered(exact, cand, k)
    # a row whose k-th exact distance reaches the worst candidate's estimate may have missed a tie
    # (or a rounding casualty) outside the candidates: re-score every item that could be that close
    q_sq = q.pow(2).sum(1)
    slack = 16 * torch.finfo(q.dtype).eps * q.shape[1] ** 0.5 * (q_sq + gallery_sq.max())
    unsure = (dist[:, -1] >= approx[:, -1] + q_sq - slack) & (width < len(gallery))
    for row in unsure.nonzero().flatten().tolist():
        wide = (scores[row] <= dist[row, -1] - q_sq[row] + 2 * slack[row]).nonzero().flatten()
        exact_row = (q[row] - gallery[wide]).pow(2).sum(1)
        indices[row], dist[row] = (t[0] for t in _ordered(exact_row[None], wide[None], k))
    return indices, dist


def _ordered(dist: torch.Tensor, index: torch.Tensor, k: int):
    """Sort each row by (distance, index) and keep k: deterministic order for equal distances."""
    by_index = index.argsort(dim=1, stable=True)
    dist, index = dist.gather(1, by_index), index.gather(1, by_index)
    by_dist = dist.argsort(dim=1, stable=True)[:, :k]
    return index.gather(1, by_dist), dist.gather(1, by_dist)


# --- inputs to vectors -------------------------------------------------------------------------

def vectors(items, space: str, model=None, layer=None, batch_size: int = 64, role: str = "query") -> torch.Tensor:
    """2-D float vectors for ``items``: given vectors pass through; images go to ``space``."""
    if _is_vectors(items):
        return torch.as_tensor(np.asarray(items) if isinstance(items, np.ndarray) else items).float()
    images = _as_batch(items)
    if space == "feature":
        if model is None:
            raise ValueError(f"feature-space neighbours of images need a model: pass model=... (or {role} features)")
        return torch.from_numpy(extract_features(model, images, layer=layer, batch_size=batch_size))
    return pixel_vectors(images, model, batch_size)


def pixel_vectors(images, model=None, batch_size: int = 64) -> torch.Tensor:
    """Each image as the model sees it (preprocessed), flattened to one row; without a model, pixels / 255."""
    if model is None:
        array = images.images if isinstance(images, ImageDataset) else images
        if isinstance(array, list) or (isinstance(array, np.ndarray) and array.dtype != np.uint8):
            raise ValueError("pixel space without a model needs a uint8 (N, H, W, 3) array of equal-size images")
        return torch.from_numpy(np.asarray(array).reshape(len(array), -1)).float().div_(255)
    from .models import as_model

    vm = as_model(model)
    rows = [x.reshape(len(x), -1).float().cpu() for x in input_batches(vm, images, batch_size)]
    return torch.cat(rows)


def _is_vectors(items) -> bool:
    return isinstance(items, (np.ndarray, torch.Tensor)) and items.ndim == 2 and _is_float(items)


def _is_float(items) -> bool:
    return items.is_floating_point() if isinstance(items, torch.Tensor) else np.issubdtype(items.dtype, np.floating)


def _as_batch(items):
    """One image becomes a batch of one; collections pass on (checked by count_images)."""
    if isinstance(items, np.ndarray) and items.ndim == 3:
        return items[None]
    if isinstance(items, torch.Tensor) and items.ndim == 3:
        return items[None]
    if isinstance(items, ImageDataset) or isinstance(items, (list, tuple, np.ndarray, torch.Tensor)):
        count_images(items)
        return items
    return [items]  # a path, bytes or PIL image


def _check_vectors(query: torch.Tensor, gallery: torch.Tensor, k: int):
    if query.ndim != 2 or gallery.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D); got query {tuple(query.shape)} and gallery {tuple(gallery.shape)}")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query vectors have {query.shape[1]} dimensions but gallery vectors have {gallery.shape[1]}; "
            "compute both with the same model, layer and space"
        )
    if len(gallery) == 0 or len(query) == 0:
        raise ValueError("the query or the gallery is empty; pass at least one item each")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(gallery):
        raise ValueError(f"k must be an int between 1 and the gallery size ({len(gallery)}); got k={k!r}")
    for name, v in (("query", query), ("gallery", gallery)):
        if not torch.isfinite(v).all():
            raise ValueError(f"the {name} vectors contain NaN or infinite values; check the features/images")
    dtype = torch.promote_types(query.dtype, gallery.dtype)
    return query.to(dtype), gallery.to(dtype, copy=False)
