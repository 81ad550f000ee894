"""The "space" of last-layer features reduced to 2-D: PCA, t-SNE (openTSNE) and UMAP, seeded.

    xy = embed(feats, method="tsne", seed=0)              # (N, 2) float32, same seed -> same layout
    for step in embed_steps(feats, "tsne"):               # watch the layout form
        draw(step.layout)

scikit-learn, openTSNE and umap are imported inside the functions that use them, so importing the
package stays cheap. UMAP is compiled by numba; its compiled code is cached on disk
(``NUMBA_CACHE_DIR``, by default a folder in the user's cache) so only the first kernel ever pays for it.
"""
from __future__ import annotations

import queue
import sys
import threading
import types
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Iterator, NamedTuple

import numpy as np

from .jit import use_cache_dir

METHODS = ("pca", "tsne", "umap")
TSNE_EARLY_ITERS = 250   # openTSNE's defaults: early exaggeration phase ...
TSNE_ITERS = 500         # ... then the normal phase
TSNE_STEP = 50           # iterations between two streamed layouts (openTSNE calls back; the run goes on)
ROWS_ELEMENTS = 2**23    # t-SNE's neighbour search: rows x gallery scores held at once (32 MiB)
EXACT_NEIGHBORS_MAX = 100_000  # brute force grows as N^2; at 50,000 x 512 it took 12.9 s vs 31.9 s for openTSNE's index


class EmbedStep(NamedTuple):
    """One streamed layout: ``progress`` in [0, 1]; ``layout`` float32 (N, 2) (None before the first)."""

    progress: float
    layout: np.ndarray | None
    method: str
    note: str


def embed(features, method: str = "pca", seed: int = 0, **options) -> np.ndarray:
    """2-D coordinates, float32 (N, 2), for N feature vectors; reproducible for a given ``seed``.

    ``method``: "pca" (linear, instant), "tsne" (openTSNE, FFT-accelerated; options such as
    ``perplexity``, ``n_iter``) or "umap" (options such as ``n_neighbors``, ``min_dist``).

        xy = embed(extract_features(model, data), "tsne", seed=0)
    """
    step = None
    for step in embed_steps(features, method, seed=seed, **options):
        pass
    return step.layout


def embed_steps(features, method: str = "pca", seed: int = 0, **options) -> Iterator[EmbedStep]:
    """``embed`` as a generator of intermediate layouts (t-SNE every ``TSNE_STEP`` iterations, UMAP 20 times over its
    epochs, PCA at once). Closing the generator stops the computation."""
    x = check_features(features)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}")
    if method == "pca":
        yield EmbedStep(1.0, pca(x), "pca", "PCA")
    elif method == "tsne":
        yield from _tsne_steps(x, seed, **options)
    else:
        yield from _umap_steps(x, seed, **options)


def check_features(features) -> np.ndarray:
    """Features as a finite float32 (N, D) array with N >= 2, or a clear error."""
    if type(features).__module__.startswith("torch"):
        features = features.detach().cpu().numpy()
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D); got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"an embedding needs at least 2 feature vectors, got {len(x)}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"features must be numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} feature vectors contain NaN or infinite values "
                         f"(first at row {int(bad.argmax())}); drop or recompute them")
    return x


# --- PCA ---------------------------------------------------------------------------------------

def pca(x: np.ndarray) -> np.ndarray:
    """The two top principal components; each axis' sign fixed (largest loading positive)."""
    centred = x.astype(np.float64) - x.mean(0)
    if centred.shape[1] <= centred.shape[0]:
        _, vecs = np.linalg.eigh(centred.T @ centred)
        axes = vecs[:, ::-1][:, :2]
    else:  # fewer points than dimensions: eigenvectors of the N x N Gram matrix
        _, vecs = np.linalg.eigh(centred @ centred.T)
        axes = centred.T @ vecs[:, ::-1][:, :2]
        axes /= np.maximum(np.linalg.norm(axes, axis=0), 1e-300)
    axes = axes * np.sign(axes[np.abs(axes).argmax(0), [0, 1]])
    layout = centred @ axes
    if layout.shape[1] < 2:
        layout = np.pad(layout, ((0, 0), (0, 2 - layout.shape[1])))
    return layout.astype(np.float32)


# --- t-SNE -------------------------------------------------------------------------------------

def _tsne_steps(x: np.ndarray, seed: int, perplexity: float = 30.0, n_iter: int = TSNE_ITERS,
                early_exaggeration_iter: int = TSNE_EARLY_ITERS, n_jobs: int = -1, **options) -> Iterator[EmbedStep]:
    from openTSNE import TSNE

    if len(x) < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {len(x)}; use method='pca'")
    perplexity = min(float(perplexity), (len(x) - 1) / 3)
    yield EmbedStep(0.0, None, "tsne", "t-SNE: finding neighbours")
    tsne = TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs, **options)
    if "neighbors" in options or len(x) > EXACT_NEIGHBORS_MAX:  # openTSNE's own (approximate) search
        embedding = tsne.prepare_initial(x)
    else:
        embedding = tsne.prepare_initial(x, affinities=_exact_affinities(x, perplexity, n_jobs))
    phases = ((early_exaggeration_iter, tsne.early_exaggeration, tsne.initial_momentum),
              (n_iter, tsne.exaggeration, tsne.final_momentum))
    total = early_exaggeration_iter + n_iter
    fft = tsne.negative_gradient_method in ("fft", "FFT", "interpolation") or (
        tsne.negative_gradient_method == "auto" and len(x) >= 10_000)   # openTSNE's "auto": FFT from 10,000 points
    objective = ParallelKL() if fft and tsne.n_jobs != 1 and tsne.n_components == 2 else None
    fit, last = TsneFit(embedding, phases, objective), EmbedStep(0.0, None, "tsne", "t-SNE: optimizing")
    try:
        for frame in fit.layouts():
            if frame is not None:
                done, layout = frame
                last = EmbedStep(done / total, layout, "tsne", f"t-SNE iteration {done}/{total}")
            yield last
        yield EmbedStep(1.0, fit.result, "tsne", f"t-SNE iteration {total}/{total}")
    finally:
        fit.stop()


class _NumpyWithScipyFft(types.ModuleType):
    """numpy, except that ``.fft`` is ``scipy.fft``."""

    def __init__(self):
        import scipy.fft

        super().__init__("numpy")
        self.fft = scipy.fft

    def __getattr__(self, name):
        return getattr(np, name)


_FFT_LOCK = threading.Lock()
_fft_users = 0


@contextmanager
def scipy_fft_in_opentsne():
    """While the block runs, openTSNE's FFT gradient takes its transforms from ``scipy.fft``, not ``numpy.fft``.

    openTSNE's wheels use numpy's FFT: nine 2-D transforms of a 300-420 point grid per iteration, a third
    of the run on 10,000 points. scipy's pocketfft does each 2-D transform in one call and is faster (the whole
    t-SNE of 10,000 x 512: about 9.7 s instead of 10.4 s); the values agree to rounding. openTSNE looks its
    ``np`` up in its module at every call, so that name is pointed at numpy-with-scipy's-fft while any
    block is open and put back in ``finally`` when the last one closes.
    """
    global _fft_users
    try:
        from openTSNE._matrix_mul import matrix_mul
    except ImportError:  # another build of openTSNE: nothing to swap
        matrix_mul = None
    if getattr(matrix_mul, "np", None) is None:
        yield
        return
    with _FFT_LOCK:
        if _fft_users == 0:
            matrix_mul.np = _NumpyWithScipyFft()
        _fft_users += 1
    try:
        yield
    finally:
        with _FFT_LOCK:
            _fft_users -= 1
            if _fft_users == 0:
                matrix_mul.np = np


def _exact_affinities(x: np.ndarray, perplexity: float, n_jobs: int):
    """openTSNE's perplexity affinities over EXACT neighbours (3 x perplexity of them, as openTSNE takes),
    found by brute force on the BLAS: on 10,000 x 512 features about 4x faster than the approximate
    index openTSNE builds by itself."""
    from openTSNE.affinity import PerplexityBasedNN
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    indices, distances = exact_neighbors(x, min(len(x) - 1, int(3 * perplexity)))
    return PerplexityBasedNN(knn_index=PrecomputedNeighbors(indices, distances), perplexity=perplexity,
                             n_jobs=n_jobs)


def exact_neighbors(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest OTHER rows: indices (N, k) and L2 distances (N, k), nearest first.
    Scores ``||g||^2 - 2 q.g`` come from one matrix product per block of rows (``ROWS_ELEMENTS`` scores)."""
    import torch

    from .neighbors import Scorer

    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    scorer = Scorer(data)
    rows = min(len(data), max(1, ROWS_ELEMENTS // scorer.columns))
    buffer = data.new_empty(rows, scorer.columns)  # one buffer for every block: its pages are faulted in once
    indices, distances = [], []
    for start in range(0, len(data), rows):
        q = data[start:start + rows]
        scores = scorer.scores(q, buffer[:len(q)])
        scores[torch.arange(len(q)), torch.arange(start, start + len(q))] = float("inf")  # not itself
        best, index = scores.topk(k, dim=1, largest=False, sorted=True)
        q_sq = torch.linalg.vector_norm(q, dim=1).square()
        distances.append(best.add_(q_sq[:, None]).clamp_min_(0).sqrt_())
        indices.append(index)
    return torch.cat(indices).numpy(), torch.cat(distances).numpy().astype(np.float64)


# --- UMAP --------------------------------------------------------------------------------------

def import_umap():
    """Import umap with numba's on-disk cache pointed at a writable user folder (set before numba loads)."""
    use_cache_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba/pynndescent import-time deprecation chatter
        import umap
    _cache_all_jit_functions(("umap", "pynndescent"))
    return umap


def _cache_all_jit_functions(packages) -> int:
    """Turn on numba's disk cache for every jitted function of ``packages``.

    umap and pynndescent mark only some functions ``cache=True``; the rest (the layout optimizer among
    them) would be recompiled in every new kernel. A dispatcher that cannot be cached (dynamic
    globals) just keeps compiling as before.
    """
    from numba.core.dispatcher import Dispatcher

    count = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in packages:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and not getattr(value, "_cache_enabled_by_cnnviz", False):
                value.enable_caching()
                value._cache_enabled_by_cnnviz = True
                count += 1
    return count


def _umap_steps(x: np.ndarray, seed: int, n_neighbors: int = 15, min_dist: float = 0.1,
                **options) -> Iterator[EmbedStep]:
    if len(x) < 5:
        raise ValueError(f"UMAP needs at least 5 points, got {len(x)}; use method='pca'")
    yield EmbedStep(0.0, None, "umap", "UMAP: compiling / loading numba code")
    umap = import_umap()
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, random_state=seed,
                        n_components=2, **options)
    yield EmbedStep(0.05, None, "umap", "UMAP: neighbour graph")
    fit, last = UmapFit(reducer, x), EmbedStep(0.05, None, "umap", "UMAP: neighbour graph")
    try:
        for frame in fit.layouts():
            if frame is not None:  # None: still working (a step anyway, so a consumer can stop here)
                epoch, total, layout = frame
                last = EmbedStep(0.1 + 0.9 * epoch / total, layout, "umap", f"UMAP epoch {epoch}/{total}")
            yield last
        yield EmbedStep(1.0, fit.result, "umap", "UMAP")
    finally:
        fit.stop()


class _Stopped(Exception):
    """Raised inside a fit's callback once nobody listens to the fit any more."""


class FitThread:
    """A fit run in a worker thread, handing out layouts as it goes.

    The fitting libraries report progress through callbacks, and a generator cannot yield from inside
    a callback; so the fit runs here and its callbacks put layouts on a queue that ``layouts()`` drains.
    Subclasses define ``_fit()`` (returns the final layout) and call ``_hand_out(item)`` or ``_check()``
    from the library's callbacks. ``stop()`` returns at once: the fit ends at its next callback.
    """

    HEARTBEAT = 0.2   # s: ``layouts`` yields None this often while no layout comes
    NAME = "cnnviz-fit"

    def __init__(self):
        self.result = None
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.NAME, daemon=True)
        self._thread.start()

    def layouts(self) -> Iterator:
        """What the fit hands out as it goes, None while waiting; sets ``result`` at the end."""
        while True:
            try:
                kind, item = self._queue.get(timeout=self.HEARTBEAT)
            except queue.Empty:
                yield None
                continue
            if kind == "layout":
                yield item
            elif kind == "error":
                raise item
            else:
                self.result = item
                return

    def stop(self) -> None:
        self._stop.set()

    def _fit(self) -> np.ndarray:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self._queue.put(("done", np.asarray(self._fit(), dtype=np.float32)))
        except _Stopped:
            pass
        except BaseException as error:  # noqa: BLE001 - handed to the consumer's thread
            self._queue.put(("error", error))

    def _check(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _hand_out(self, item) -> None:
        self._check()
        self._queue.put(("layout", item))


class TsneFit(FitThread):
    """openTSNE's optimization, phase by phase, handing out (iteration, float32 layout) every ``TSNE_STEP``
    iterations through openTSNE's callbacks: one ``optimize`` call per phase (each call ends with an
    extra gradient and KL evaluation). ``objective`` replaces openTSNE's gradient function (None: its own)."""

    NAME = "cnnviz-tsne"

    def __init__(self, embedding, phases, objective=None):
        self.embedding, self.phases, self.objective = embedding, phases, objective
        super().__init__()

    def _fit(self) -> np.ndarray:
        done, last_phase = 0, max((i for i, (iters, *_) in enumerate(self.phases) if iters), default=-1)
        method = {} if self.objective is None else {"negative_gradient_method": self.objective}
        with scipy_fft_in_opentsne(), self.objective or nullcontext():
            for phase, (iters, exaggeration, momentum) in enumerate(self.phases):
                if not iters:
                    continue

                def each_step(n, _error, layout, before=done):
                    return self._on_step(before + n, layout)
                self.embedding.optimize(iters, exaggeration=exaggeration, momentum=momentum, inplace=True,
                                        propagate_exception=True, callbacks=each_step, callbacks_every_iters=TSNE_STEP,
                                        **method)
                done += iters
                if iters % TSNE_STEP and phase != last_phase:  # the phase ended off the step grid: show it
                    self._on_step(done, self.embedding)
        return self.embedding

    def _on_step(self, iteration: int, layout) -> bool:
        self._hand_out((iteration, np.array(layout, dtype=np.float32)))
        return False  # False: openTSNE goes on


class ParallelKL:
    """openTSNE's FFT gradient of the KL divergence (2-D), with its two halves computed at once.

    openTSNE computes the repulsive forces (FFT interpolation, on one thread) and then the attractive
    ones (a sum over each point's neighbours, on ``n_jobs`` threads). Here the repulsive forces run in a
    helper thread while the attractive ones take the other threads: on 2 cores a gradient of 10,000
    points takes 8.2 ms instead of 10.7 ms. The two halves go into separate arrays and are added, so the
    gradient equals openTSNE's to rounding, and a seed still gives one layout. Used as a ``with`` block
    (the helper thread ends with it); called as openTSNE calls its gradient functions.
    """

    def __enter__(self):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cnnviz-tsne-repulsion")
        return self

    def __exit__(self, *exc):
        self._pool.shutdown()

    def __call__(self, embedding, P, dof=1, fft_params=None, reference_embedding=None, should_eval_error=False,
                 n_jobs=1, **_):
        from openTSNE import _tsne

        if reference_embedding is not None or embedding.ndim != 2 or embedding.shape[1] != 2:
            raise ValueError("ParallelKL computes 2-D embeddings of their own points only")
        repulsive, attractive = np.zeros(embedding.shape), np.zeros(embedding.shape)
        pending = self._pool.submit(_tsne.estimate_negative_gradient_fft_2d, embedding, repulsive,
                                    **(fft_params or {}), dof=dof)
        try:
            sum_p, kl = _tsne.estimate_positive_gradient_nn(
                P.indices, P.indptr, P.data, embedding, embedding, attractive, dof,
                num_threads=max(1, n_jobs - 1), should_eval_error=should_eval_error)[:2]
        finally:
            sum_q = pending.result()
        if should_eval_error:
            sum_q = sum_q[0] if isinstance(sum_q, tuple) else sum_q
            kl += sum_p * np.log(sum_q + np.finfo(np.float64).eps)
        repulsive += attractive
        return kl, repulsive


class UmapFit(FitThread):
    """``reducer.fit_transform(x)``, handing out (epoch, total epochs, float32 layout) ``FRAMES`` times.

    umap has no callback, so while the fit runs, two names of umap are replaced (``epoch_hook``): its
    Euclidean layout optimizer, to see the layout array it moves in place, and the progress-bar
    wrapper of its epoch loop, to act after every epoch. Copying the layout does not change the
    computation (same seed, same result). A stopped fit ends at its next epoch (once the neighbour
    graph is built), and the thread puts umap's names back on its way out.
    """

    FRAMES = 20       # layouts handed out over a fit
    NAME = "cnnviz-umap"

    def __init__(self, reducer, x: np.ndarray):
        self.reducer, self.x = reducer, x
        super().__init__()

    def _fit(self) -> np.ndarray:
        with epoch_hook(self._on_epoch), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state" and friends
            return self.reducer.fit_transform(self.x)

    def _on_epoch(self, epoch: int, total: int, layout) -> None:
        self._check()
        every = max(1, total // self.FRAMES)
        if layout is not None and epoch % every == 0 and epoch < total:
            self._hand_out((epoch, total, np.array(layout, dtype=np.float32)))


_HOOK_LOCK = threading.Lock()   # one hooked fit at a time: the replaced names are module-wide


@contextmanager
def epoch_hook(on_epoch):
    """While the block runs, umap calls ``on_epoch(epoch, total, layout)`` after each layout epoch made
    in THIS thread (``layout`` is the array being optimized, or None for non-Euclidean outputs); other
    threads see umap unchanged. umap's own names are restored in ``finally``."""
    from umap import layouts, umap_

    owner = threading.get_ident()
    optimize, progress = umap_.optimize_layout_euclidean, layouts.tqdm
    seen = {}

    def hooked_optimize(head_embedding, *args, **kwargs):
        if threading.get_ident() == owner:
            seen["layout"] = head_embedding
        return optimize(head_embedding, *args, **kwargs)

    def hooked_progress(epochs, *args, **kwargs):
        if threading.get_ident() != owner:
            return progress(epochs, *args, **kwargs)
        return _after_each(epochs, lambda n: on_epoch(n, len(epochs), seen.get("layout")))

    with _HOOK_LOCK:
        umap_.optimize_layout_euclidean, layouts.tqdm = hooked_optimize, hooked_progress
        try:
            yield
        finally:
            umap_.optimize_layout_euclidean, layouts.tqdm = optimize, progress


def _after_each(epochs, callback):
    for n in epochs:
        yield n
        callback(n + 1)
