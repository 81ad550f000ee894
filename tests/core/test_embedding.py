"""embed: PCA against scikit-learn, t-SNE seeded and streamed, UMAP seeded, clear errors, lazy imports."""
import subprocess
import sys
import threading

import numpy as np
import pytest

from cnnviz_widgets.core import embedding, jit
from cnnviz_widgets.core.embedding import embed, embed_steps

FAST_TSNE = dict(n_iter=60, early_exaggeration_iter=40, n_jobs=1)


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated Gaussian clusters in 20-D."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(3, 20))
    labels = np.repeat(np.arange(3), 50)
    return (centres[labels] + rng.normal(size=(150, 20))).astype(np.float32), labels


def knn_agreement(xy, labels, k=5):
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, 1)[:, :k]
    return float((labels[idx] == labels[:, None]).mean())


@pytest.mark.parametrize("n, dim", [(150, 20), (12, 40)])  # more points than dims, and fewer
def test_pca_matches_scikit_learn_up_to_axis_sign(n, dim):
    from sklearn.decomposition import PCA
    x = np.random.default_rng(n).normal(size=(n, dim)).astype(np.float32) * np.linspace(3, 0.1, dim)
    ours = embed(x, "pca")
    ref = PCA(2).fit_transform(x.astype(np.float64))
    assert ours.dtype == np.float32 and ours.shape == (n, 2)
    np.testing.assert_allclose(ours * np.sign((ours * ref).sum(0)), ref, atol=1e-3 * np.abs(ref).max())


def test_tsne_neighbours_are_the_exact_nearest_other_points():
    """The brute-force neighbours t-SNE's affinities are built on: each point's k nearest OTHER points,
    also across the 32 MiB row blocks (shrunk here to 7 rows) and with a duplicate point (distance 0)."""
    from cnnviz_widgets.core import embedding as emb
    x = np.random.default_rng(5).normal(size=(300, 16)).astype(np.float32)
    x[17] = x[3]
    ref = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
    np.fill_diagonal(ref, np.inf)
    order = np.argsort(ref, axis=1, kind="stable")[:, :9]                   # never itself: the diagonal is inf
    for block in (2**23, 7 * 320):                        # 320 = the padded gallery width (300 -> 10 lanes)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(emb, "ROWS_ELEMENTS", block)
            indices, distances = emb.exact_neighbors(x, 9)
        np.testing.assert_allclose(distances, np.take_along_axis(ref, order, 1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.take_along_axis(ref, indices, 1), distances, rtol=1e-5, atol=1e-5)
        assert all(len(set(row)) == 9 for row in indices.tolist())   # (3 and 17 tie: either order is right)
        assert (np.mean(indices == order) > 0.99)
    assert indices[3, 0] == 17 and indices[17, 0] == 3 and distances[3, 0] < 1e-3


def test_tsne_on_many_points_uses_opentsne_s_own_neighbour_search(blobs, monkeypatch):
    """Brute force grows as N^2: above EXACT_NEIGHBORS_MAX points the approximate index takes over."""
    from cnnviz_widgets.core import embedding as emb
    x, labels = blobs
    monkeypatch.setattr(emb, "EXACT_NEIGHBORS_MAX", len(x) - 1)
    monkeypatch.setattr(emb, "exact_neighbors", lambda *a: pytest.fail("brute force on too many points"))
    assert knn_agreement(embed(x, "tsne", seed=3, **FAST_TSNE), labels) >= 0.95


def test_tsne_is_seeded_and_keeps_clusters(blobs):
    x, labels = blobs
    a, b = embed(x, "tsne", seed=3, **FAST_TSNE), embed(x, "tsne", seed=3, **FAST_TSNE)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, embed(x, "tsne", seed=4, **FAST_TSNE))
    assert knn_agreement(a, labels) >= 0.95


def test_tsne_streams_layouts_that_end_in_the_result(blobs, monkeypatch):
    from cnnviz_widgets.core import embedding as emb
    monkeypatch.setattr(emb, "TSNE_STEP", 25)
    x, _ = blobs
    steps = list(embed_steps(x, "tsne", seed=3, **FAST_TSNE))
    layouts = [s.layout for s in steps if s.layout is not None]  # every 25 iterations: 25+15, 25+25+10
    progress = [s.progress for s in steps]
    assert len(layouts) == 5 and progress == sorted(progress) and progress[-1] == 1.0
    assert not np.array_equal(layouts[0], layouts[-1])  # the layout moves while it forms
    np.testing.assert_array_equal(layouts[-1], embed(x, "tsne", seed=3, **FAST_TSNE))



def test_tsne_gradient_is_the_same_with_scipy_s_fft():
    """The FFT swap changes speed only: openTSNE's repulsive forces agree with its numpy-FFT ones to rounding."""
    from openTSNE import _tsne
    from openTSNE._matrix_mul import matrix_mul

    y = np.random.default_rng(2).normal(scale=20, size=(2000, 2))   # a 40-unit spread: a grid of 300+ points

    def forces():
        gradient = np.zeros_like(y)
        sum_q = _tsne.estimate_negative_gradient_fft_2d(y, gradient)
        return gradient, sum_q

    numpy_gradient, numpy_sum = forces()
    with embedding.scipy_fft_in_opentsne():
        assert matrix_mul.np.fft.__name__ == "scipy.fft" and matrix_mul.np.zeros is np.zeros
        scipy_gradient, scipy_sum = forces()
    assert matrix_mul.np is np
    assert np.abs(numpy_gradient).max() > 1e-5                         # forces, not zeros
    np.testing.assert_allclose(scipy_gradient, numpy_gradient, rtol=1e-9, atol=1e-15)
    assert scipy_sum == pytest.approx(numpy_sum, rel=1e-12)



@pytest.mark.parametrize("with_error", [False, True])
def test_parallel_kl_gradient_is_opentsne_s(blobs, with_error):
    """Both halves of the gradient at once (repulsive in a helper thread): openTSNE's numbers to rounding."""
    from openTSNE.tsne import kl_divergence_fft
    x, _ = blobs
    P = embedding._exact_affinities(x, 30.0, 1).P
    y = np.random.default_rng(1).normal(scale=15, size=(len(x), 2))
    fft_params = dict(n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1)
    ref_kl, ref_gradient = kl_divergence_fft(y, P, dof=1, fft_params=fft_params, n_jobs=2,
                                             should_eval_error=with_error)
    with embedding.ParallelKL() as objective:
        kl, gradient = objective(y, P, dof=1, fft_params=fft_params, n_jobs=2, should_eval_error=with_error,
                                 bh_params={}, reference_embedding=None)
    assert np.abs(ref_gradient).max() > 1e-4
    np.testing.assert_allclose(gradient, ref_gradient, rtol=1e-10, atol=1e-14)
    assert kl == pytest.approx(ref_kl, rel=1e-10) and (kl > 0) == with_error
    assert not [t for t in threading.enumerate() if t.name.startswith("cnnviz-tsne-repulsion")]


def test_tsne_with_threads_uses_the_parallel_gradient_and_stays_seeded(blobs, monkeypatch):
    x, labels = blobs
    calls = []
    real = embedding.ParallelKL.__call__
    monkeypatch.setattr(embedding.ParallelKL, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    options = dict(FAST_TSNE, n_jobs=2, negative_gradient_method="fft")
    a, b = embed(x, "tsne", seed=3, **options), embed(x, "tsne", seed=3, **options)
    assert len(calls) == 2 * (100 + 2)                  # every iteration, and the end of each phase
    np.testing.assert_array_equal(a, b)
    assert knn_agreement(a, labels) >= 0.95
    calls.clear()
    embed(x, "tsne", seed=3, **dict(options, negative_gradient_method="bh"))   # Barnes-Hut: openTSNE's own
    assert not calls

def test_tsne_stops_at_its_next_step_and_puts_numpy_s_fft_back(blobs, monkeypatch):
    """A stopped t-SNE ends in its worker thread at the next streamed step and restores openTSNE's FFT,
    unless another run (here a nested block) still uses the swap."""
    from openTSNE._matrix_mul import matrix_mul
    x, _ = blobs
    reached, resume, steps_seen = threading.Event(), threading.Event(), []
    on_step = embedding.TsneFit._on_step

    def gated(self, iteration, layout):  # hold the fit at its first step until the test has pressed Stop
        steps_seen.append(iteration)
        if len(steps_seen) == 1:
            reached.set()
            resume.wait(30)
        return on_step(self, iteration, layout)
    monkeypatch.setattr(embedding.TsneFit, "_on_step", gated)
    steps = embed_steps(x, "tsne", seed=3, **FAST_TSNE)
    next(steps), next(steps)                                           # neighbours; then the fit starts
    assert reached.wait(60)
    assert matrix_mul.np is not np                                     # swapped while the fit runs ...
    with embedding.scipy_fft_in_opentsne():                            # ... and a second user ...
        steps.close()                                                  # ... keeps it after the fit stops
        resume.set()
        for thread in [t for t in threading.enumerate() if t.name == "cnnviz-tsne"]:
            thread.join(30)
            assert not thread.is_alive()
        assert matrix_mul.np is not np
    assert matrix_mul.np is np
    assert steps_seen == [40]              # the end of early exaggeration; then it stopped: no second step


@pytest.mark.slow  # the first run ever compiles umap with numba (~1-2 min); later runs load the cache
def test_umap_is_seeded_and_keeps_clusters(blobs):
    x, labels = blobs
    a = embed(x, "umap", seed=0, n_neighbors=10, n_epochs=60)
    b = embed(x, "umap", seed=0, n_neighbors=10, n_epochs=60)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (150, 2) and knn_agreement(a, labels) >= 0.95


@pytest.mark.slow
def test_umap_streams_layouts_that_end_in_umaps_own_result(blobs):
    x, _ = blobs
    steps = list(embed_steps(x, "umap", seed=0, n_neighbors=10, n_epochs=100))
    layouts = [s.layout for s in steps if s.layout is not None]
    progress = [s.progress for s in steps]
    assert len({s.note for s in steps if s.layout is not None}) == 20  # 19 on the way + the end
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert not np.array_equal(layouts[0], layouts[-1])  # the layout moves while it forms
    umap = embedding.import_umap()
    direct = umap.UMAP(n_neighbors=10, n_epochs=100, random_state=0, n_jobs=1, min_dist=0.1).fit_transform(x)
    np.testing.assert_array_equal(layouts[-1], direct)  # watching does not change the computation


@pytest.mark.slow
def test_umap_stops_between_epochs_and_puts_umap_back(blobs, monkeypatch):
    from umap import layouts as umap_layouts, umap_
    x, _ = blobs
    original = (umap_layouts.tqdm, umap_.optimize_layout_euclidean)
    reached, resume = threading.Event(), threading.Event()
    on_epoch = embedding.UmapFit._on_epoch

    def gated(self, epoch, total, layout):  # hold the fit at epoch 10 until the test has pressed Stop
        if epoch == 10:
            reached.set()
            resume.wait(30)
        on_epoch(self, epoch, total, layout)
    monkeypatch.setattr(embedding.UmapFit, "_on_epoch", gated)
    umap = embedding.import_umap()
    fit = embedding.UmapFit(umap.UMAP(n_neighbors=10, n_epochs=500, random_state=0), x)
    assert reached.wait(60)
    fit.stop()
    resume.set()
    fit._thread.join(30)
    assert not fit._thread.is_alive()
    kinds = [fit._queue.get_nowait()[0] for _ in range(fit._queue.qsize())]
    assert "done" not in kinds and "error" not in kinds and fit.result is None  # it ended at epoch 11 of 500
    assert (umap_layouts.tqdm, umap_.optimize_layout_euclidean) == original


@pytest.mark.slow
def test_a_held_up_umap_fit_still_gives_steps_so_a_consumer_can_stop(blobs, monkeypatch):
    """While no layout comes (neighbour graph, or here a fit held at epoch 1) the generator still yields
    waiting steps, so a Job sees its Stop; closing the generator ends the fit thread."""
    x, _ = blobs
    release = threading.Event()
    on_epoch = embedding.UmapFit._on_epoch

    def held(self, epoch, total, layout):
        if epoch == 1:
            release.wait(30)
        on_epoch(self, epoch, total, layout)
    monkeypatch.setattr(embedding.UmapFit, "_on_epoch", held)
    monkeypatch.setattr(embedding.UmapFit, "HEARTBEAT", 0.05)
    steps = embed_steps(x, "umap", seed=0, n_neighbors=10, n_epochs=400)
    waiting = [next(steps) for _ in range(5)]
    assert all(s.layout is None for s in waiting) and waiting[-1].progress < 1
    steps.close()
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "cnnviz-umap"]:
        thread.join(30)
        assert not thread.is_alive()


def test_numba_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nb"))
    assert jit.numba_cache_dir() == tmp_path / "nb"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jit.numba_cache_dir() == tmp_path / "cnnviz_widgets" / "numba"


def test_heavy_libraries_are_imported_lazily():
    code = ("import sys, cnnviz_widgets.core.embedding, cnnviz_widgets.core.neighbors;"
            "print([m for m in ('umap', 'openTSNE', 'sklearn', 'numba') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("features, method, match", [
    (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]), "pca", "1 feature vectors contain NaN.*row 1"),
    (np.zeros(5), "pca", "2-D"),
    (np.zeros((1, 3)), "pca", "at least 2"),
    (np.zeros((4, 3)), "tsne", "at least 5"),
    (np.zeros((9, 3)), "mds", "method must be"),
])
def test_bad_input(features, method, match):
    with pytest.raises(ValueError, match=match):
        embed(features, method)
