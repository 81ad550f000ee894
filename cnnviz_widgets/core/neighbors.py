"""Exact L2 nearest neighbours, in feature space or in pixel space (the lecture's last-layer slide).

    nn = nearest_neighbors(query_images, data, k=8, space="feature", model=model)
    nn.indices[0], nn.distances[0]       # the 8 gallery images closest to the first query

Squared distances come from ``||q||^2 - 2 q.g + ||g||^2``, so the cost is the BLAS floor: the matrix
products. On the CPU a large search takes them in cache-sized tiles, and a compiled loop (numba) folds
each tile into every query's running best while the tile is still in cache: no score matrix is held,
and the selection costs a few percent of the products. Elsewhere (a GPU, a small search, no numba) one
product per chunk of queries is followed by a selection from minima of column sets (one fast pass)
instead of a full top-k, which cost a third of the product.

That expansion loses digits when two vectors are close (it can even go slightly negative), so it only
picks candidates: the best ``k + margin`` per query are re-scored exactly as ``||q - g||^2`` and ordered
by (distance, gallery index). Equal distances therefore always come back in index order, and the
answer is the brute-force one.
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import ImageDataset
from .features import count_images, extract_features, input_batches

SPACES = ("feature", "pixel")
MARGIN = 4            # extra candidates re-scored exactly, to absorb rounding of the expansion
CHUNK_ELEMENTS = 2**26  # query-chunk x gallery entries held at once (256 MiB in float32): big GEMMs
LANES = 32            # selection, first pass: minima over 32 columns n/32 apart (see ``smallest``)
GROUP = 8             # selection, second level: minima of 8 neighbouring first-pass minima
TILE_ROWS = 1024      # CPU: queries x ...
TILE_COLUMNS = 3072   # ... gallery items per product (12 MiB), still in cache when the selection reads it
TILED_MIN_SCORES = CHUNK_ELEMENTS  # smaller searches: one product, no numba (its first compile takes ~5 s)


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
    width = min(k + MARGIN, len(gallery))
    loops = _compiled_loops(query, gallery)
    if loops is not None:
        scorer = Scorer(gallery, unit=tile_columns(len(gallery)))
        keep, distances = loops
        found = [_exact(query, scorer, k, *_tiled_candidates(query, scorer, width, keep), distances)]
    else:
        scorer = Scorer(gallery, unit=LANES * GROUP if len(gallery) > 4 * LANES * GROUP else 1)
        chunk = max(1, CHUNK_ELEMENTS // scorer.columns)
        buffer = _score_buffer(query, min(chunk, len(query)), scorer.columns)
        found = [_knn_chunk(query[s:s + chunk], scorer, width, k, buffer) for s in range(0, len(query), chunk)]
    indices = torch.cat([i for i, _ in found]).cpu().numpy()
    distances = torch.cat([d for _, d in found]).sqrt().cpu().numpy()
    return Neighbors(indices, distances, space)


def _compiled_loops(query: torch.Tensor, gallery: torch.Tensor):
    """The compiled tile selection and re-scoring where they pay: on the CPU, for searches of
    ``TILED_MIN_SCORES`` scores or more (None otherwise, or without numba)."""
    if query.device.type != "cpu" or len(query) * len(gallery) < TILED_MIN_SCORES:
        return None
    from . import jit

    keep, rescore = jit.compiled("keep_smallest"), jit.compiled("candidate_distances")
    if keep is None or rescore is None:
        return None

    def distances(q, gallery, index):
        out = q.new_empty(index.shape)
        rescore(q.numpy(), gallery.numpy(), index.numpy(), out.numpy())
        return out

    return keep, distances


def _score_buffer(like: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """One (rows, columns) buffer reused by every chunk (no fresh pages to fault in), with a row stride
    that is not a multiple of 1 KiB: rows 4 KiB apart share cache sets, which slowed the GEMM by 5%."""
    stride = columns + (16 if (columns * like.element_size()) % 1024 == 0 else 0)
    return like.new_empty(rows, stride)[:, :columns]


class Scorer:
    """Ranking scores ``||g||^2 - 2 q.g`` (the squared distance less ``||q||^2``, the same for a whole row).
    ``scores`` makes them with ONE matrix product: queries get a column of ones, the gallery becomes
    ``[-2 g | ||g||^2]`` (built on first use). ``columns`` counts the gallery padded to a multiple of
    ``unit`` (sets for ``smallest``, tiles); padding columns score +inf, as do ``norms`` there."""

    def __init__(self, gallery: torch.Tensor, unit: int = 1):
        n = len(gallery)
        self.gallery, self.sq = gallery, torch.linalg.vector_norm(gallery, dim=1).square()
        self.unit, self.columns = unit, -(-n // unit) * unit
        self.norms = torch.cat([self.sq, self.sq.new_full((self.columns - n,), float("inf"))])

    @functools.cached_property
    def augmented(self) -> torch.Tensor:
        n, dim = self.gallery.shape
        augmented = self.gallery.new_zeros(self.columns, dim + 1)
        torch.mul(self.gallery, -2, out=augmented[:n, :dim])
        augmented[:, dim] = self.norms
        return augmented

    def scores(self, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mm(torch.cat([q, q.new_ones(len(q), 1)], 1), self.augmented.T, out=out)

    def row(self, q: torch.Tensor) -> torch.Tensor:
        """One query's scores over the unpadded gallery."""
        return torch.addmv(self.sq, self.gallery, q, alpha=-2)


def tile_columns(n: int) -> int:
    """Gallery items per tile: equal tiles of about ``TILE_COLUMNS``, a multiple of ``LANES`` each."""
    tiles = -(-n // TILE_COLUMNS)
    return -(-n // (tiles * LANES)) * LANES


def _tiled_candidates(query: torch.Tensor, scorer: Scorer, width: int, keep):
    """Each query's ``width`` smallest scores and their columns, one cache-sized product -2 Q G^T at a
    time: the compiled ``keep`` adds the norms and folds the tile into the running best while the tile
    is still in cache. No score matrix is held (a 12 MiB tile instead of 256 MiB of rows).

    With torch's ``n`` threads, ``n`` worker threads each take every n-th block of queries and run its
    products on one thread, so each core selects from the tile it has just written, in its own cache:
    10,000 x 50,000 x 512 then takes about the products' time alone (one product on all threads
    followed by one selection read half of every tile from the other core's cache: +12%)."""
    threads = torch.get_num_threads()
    streams = max(1, min(threads, -(-len(query) // TILE_ROWS)))
    blocks = -(-max(streams, -(-len(query) // TILE_ROWS)) // streams) * streams
    rows = -(-len(query) // blocks)
    best = np.full((len(query), width), np.inf, dtype=query[:0].numpy().dtype)
    where = np.zeros((len(query), width), dtype=np.int64)
    starts = list(range(0, len(query), rows))
    jobs = [(query, scorer, keep, best, where, starts[i::streams], rows) for i in range(streams)]
    if streams == 1:
        _fold_blocks(*jobs[0])
    else:
        with ThreadPoolExecutor(streams, thread_name_prefix="cnnviz-knn") as pool:
            for done in [pool.submit(_on_one_thread, threads, _fold_blocks, *job) for job in jobs]:
                done.result()
    return torch.from_numpy(best), torch.from_numpy(where), lambda row: scorer.row(query[row])


def _on_one_thread(restore: int, work, *args):
    """``work(*args)`` with this thread's torch ops on one thread; torch's count is ``restore`` after."""
    torch.set_num_threads(1)   # per thread for OpenMP and MKL; torch's default for new threads is put back below
    try:
        return work(*args)
    finally:
        torch.set_num_threads(restore)


def _fold_blocks(query, scorer: Scorer, keep, best, where, starts, rows: int) -> None:
    """The products of the query blocks at ``starts``, tile by tile, each folded into ``best``/``where``."""
    columns, n = scorer.unit, len(scorer.gallery)
    tile = query.new_zeros(rows, columns)          # past the gallery's end a tile keeps finite old values
    cells, norms = tile.numpy(), scorer.norms.numpy()
    minima = np.empty(columns // LANES, dtype=cells.dtype)
    for start in starts:
        q = query[start:start + rows].mul(-2)
        m = len(q)
        for first in range(0, n, columns):
            part = scorer.gallery[first:first + columns]
            torch.mm(q, part.T, out=tile[:m, :len(part)])
            keep(cells[:m], first, columns // LANES, norms, best[start:start + m], where[start:start + m], minima)


def smallest(scores: torch.Tensor, width: int, lanes: int, group: int):
    """The ``width`` smallest scores of each row, sorted, and their columns: the same values as
    ``scores.topk(width, largest=False)`` at a fraction of its cost on long rows.

    Cut a row into sets in any way: the ``width`` sets with the smallest minima hold at least
    ``width`` scores no larger than the width-th smallest minimum, and every score below it lies in
    one of them (its set's minimum is smaller). Here set j is the columns j, j + n, j + 2n, ...
    (n = columns / lanes): their minima take one vectorized pass over the row; the width smallest
    minima come from the same rule one level up (blocks of ``group``); a top-k over those sets ends
    it. Equal scores at the boundary may come from other columns than a full top-k's.
    """
    rows, columns = scores.shape
    if columns % (lanes * group) or columns <= 4 * width * lanes * group:
        return scores.topk(width, dim=1, largest=False, sorted=True)
    strided = scores.view(rows, lanes, columns // lanes)
    _, sets = smallest_in_blocks(strided.amin(1), width, group)
    inside = strided.gather(2, sets[:, None, :].expand(-1, lanes, -1)).flatten(1)
    values, where = inside.topk(width, dim=1, largest=False, sorted=True)
    return values, (where // width) * (columns // lanes) + sets.gather(1, where % width)


def smallest_in_blocks(x: torch.Tensor, width: int, block: int):
    """``smallest`` with the row cut into contiguous blocks of ``block`` columns."""
    rows, columns = x.shape
    if columns % block or columns <= 4 * width * block:
        return x.topk(width, dim=1, largest=False, sorted=True)
    blocks = x.view(rows, columns // block, block)
    _, chosen = blocks.amin(-1).topk(width, dim=1, largest=False, sorted=False)
    inside = blocks.gather(1, chosen[..., None].expand(-1, -1, block)).flatten(1)
    values, where = inside.topk(width, dim=1, largest=False, sorted=True)
    return values, chosen.gather(1, where // block) * block + where % block


def _knn_chunk(q: torch.Tensor, scorer: Scorer, width: int, k: int, buffer: torch.Tensor):
    scores = scorer.scores(q, buffer[:len(q)])
    approx, cand = smallest(scores, width, LANES, GROUP)
    return _exact(q, scorer, k, approx, cand, lambda row: scores[row])


def _exact(q: torch.Tensor, scorer: Scorer, k: int, approx: torch.Tensor, cand: torch.Tensor, score_row,
           distances=None):
    """The k nearest among each row's candidates, by exact ``distances`` (q, gallery, index); ``score_row(i)``
    gives row i's ranking scores over the gallery for the rows that need a wider look."""
    gallery, gallery_sq = scorer.gallery, scorer.sq
    width = cand.shape[1]
    exact = (distances or _squared_distances)(q, gallery, cand)
    indices, dist = _ordered(exact, cand, k)
    # a row whose k-th exact distance reaches the worst candidate's estimate may have missed a tie
    # (or a rounding casualty) outside the candidates: re-score every item that could be that close
    q_sq = torch.linalg.vector_norm(q, dim=1).square()
    slack = 16 * torch.finfo(q.dtype).eps * q.shape[1] ** 0.5 * (q_sq + gallery_sq.max())
    unsure = (dist[:, -1] >= approx[:, -1] + q_sq - slack) & (width < len(gallery))
    for row in unsure.nonzero().flatten().tolist():
        scores = score_row(row)[:len(gallery)]              # (padding columns cut off)
        wide = (scores <= dist[row, -1] - q_sq[row] + 2 * slack[row]).nonzero().flatten()
        exact_row = _squared_distances(q[row:row + 1], gallery, wide[None])
        indices[row], dist[row] = (t[0] for t in _ordered(exact_row, wide[None], k))
    return indices, dist


def _squared_distances(q: torch.Tensor, gallery: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """||q_i - g_j||^2 from the differences themselves (no cancellation) for the (Q, m) gallery ``index``."""
    diff = F.embedding(index, gallery)  # the rows gallery[index], gathered faster than by indexing
    return diff.sub_(q[:, None, :]).square_().sum(-1)


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
        if not torch.isfinite(v.sum()) and not torch.isfinite(v).all():  # a finite sum: no NaN or inf
            raise ValueError(f"the {name} vectors contain NaN or infinite values; check the features/images")
    dtype = torch.promote_types(query.dtype, gallery.dtype)
    return query.detach().to(dtype), gallery.detach().to(dtype, copy=False)
