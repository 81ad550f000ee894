"""numba, imported only when a compiled loop is first needed, with its on-disk cache in a writable
user folder, so each loop is compiled once per machine instead of once per kernel start.

UMAP (``embedding.import_umap``) and the nearest-neighbour search (``keep_smallest``,
``candidate_distances``) use it.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np


def numba_cache_dir() -> Path:
    """Where numba keeps compiled code: $NUMBA_CACHE_DIR, else <user cache>/cnnviz_widgets/numba."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnviz_widgets" / "numba"


def use_cache_dir() -> None:
    """Point numba's cache at ``numba_cache_dir()`` (before numba loads, or make a loaded numba re-read it)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    path = numba_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    if "numba" in sys.modules:
        sys.modules["numba"].core.config.reload_config()


FLAGS = {"nnan", "nsz", "arcp", "contract", "afn", "reassoc"}  # fast math but "no infinities": +inf marks empty slots


@functools.cache
def compiled(name: str):
    """The loop ``name`` of this module compiled by numba (None without numba: callers keep their torch path)."""
    use_cache_dir()
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(nogil=True, cache=True, fastmath=FLAGS, error_model="numpy")(globals()[name])


def keep_smallest(products, first, sets, norms, best, where, minima):
    """Fold one tile of scores into each row's running ``width`` smallest (plain Python; run ``compiled``).

    Row i's scores over gallery columns ``first, first + 1, ...`` are ``products[i] + norms[first:]``
    (``products`` = -2 q.g, ``norms`` = ||g||^2, +inf for padding columns). ``best``/``where``
    (rows, width) are each row's smallest scores so far, ascending, and their columns (+inf: an empty
    slot); ``minima`` is scratch of length ``sets``, and ``sets`` divides the tile's width.

    Set s of a row is its columns s, s + sets, s + 2 sets, ...: their minima take one vectorized pass,
    and only sets whose minimum could still enter ``best`` are scanned. Before a row has ``width``
    scores, the width-th smallest set minimum bounds what can enter (the ``width`` smallest minima are
    ``width`` different scores). As with ``topk``, which of several equal scores at the boundary stays
    is not specified.
    """
    width = best.shape[1]
    last = width - 1
    lanes = products.shape[1] // sets
    norm = norms[first:first + products.shape[1]]
    for i in range(products.shape[0]):
        row, b, w = products[i], best[i], where[i]
        head, head_norm = row[:sets], norm[:sets]
        for s in range(sets):
            minima[s] = head[s] + head_norm[s]
        for t in range(1, lanes):
            chunk, chunk_norm = row[t * sets:(t + 1) * sets], norm[t * sets:(t + 1) * sets]
            for s in range(sets):
                v = chunk[s] + chunk_norm[s]
                if v < minima[s]:
                    minima[s] = v
        bound = b[last]
        if bound == np.inf and width <= sets:
            bound = np.partition(minima, last)[last]
        for s in range(sets):
            if minima[s] > bound:
                continue
            for t in range(lanes):
                j = t * sets + s
                v = row[j] + norm[j]
                if v > bound or v >= b[last]:
                    continue
                p = last
                while p > 0 and b[p - 1] > v:
                    b[p] = b[p - 1]
                    w[p] = w[p - 1]
                    p -= 1
                b[p] = v
                w[p] = first + j
                bound = min(bound, b[last])


def candidate_distances(query, gallery, index, out):
    """``out[i, j] = ||query[i] - gallery[index[i, j]]||^2`` from the differences (no cancellation),
    without gathering the candidate rows into a (Q, m, D) array first (plain Python; run ``compiled``)."""
    for i in range(index.shape[0]):
        q = query[i]
        for j in range(index.shape[1]):
            g = gallery[index[i, j]]
            total = 0.0
            for d in range(q.shape[0]):
                diff = g[d] - q[d]
                total += diff * diff
            out[i, j] = total
