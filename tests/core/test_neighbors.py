"""nearest_neighbors: exactly the brute-force answer (ties in index order), and the lecture's point on the
embedded model: feature-space neighbours share the shape, pixel-space neighbours share colour, not shape."""
import numpy as np
import pytest
import torch

import cnnviz_widgets as cw
from cnnviz_widgets.core import neighbors as nbr
from cnnviz_widgets.core.neighbors import nearest_neighbors


def brute_force(q, g, k):
    d = ((q[:, None, :].astype(np.float64) - g[None].astype(np.float64)) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.sqrt(np.take_along_axis(d, idx, 1))


@pytest.mark.parametrize("k", [1, 5, 20])
def test_same_answer_as_brute_force(k):
    rng = np.random.default_rng(k)
    g = rng.normal(size=(300, 24)).astype(np.float32)
    q = rng.normal(size=(40, 24)).astype(np.float32)
    found = nearest_neighbors(q, g, k=k)
    idx, dist = brute_force(q, g, k)
    np.testing.assert_array_equal(found.indices, idx)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-5)


def test_agrees_with_scikit_learn_brute_force():
    from sklearn.neighbors import NearestNeighbors
    rng = np.random.default_rng(7)
    g, q = rng.normal(size=(500, 32)), rng.normal(size=(50, 32))
    dist, idx = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(g).kneighbors(q)
    found = nearest_neighbors(q, g, k=8)
    np.testing.assert_array_equal(found.indices, idx)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-6)


def test_ties_come_back_in_index_order_even_beyond_the_candidates():
    """40 copies of the same vector: a top-k with ties at the boundary must still pick the lowest indices."""
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, size=(120, 4)).astype(np.float32)
    g[10:50] = g[10]
    q = np.concatenate([g[10:11], rng.integers(0, 3, size=(9, 4)).astype(np.float32)])
    found = nearest_neighbors(q, g, k=12)
    np.testing.assert_array_equal(found.indices, brute_force(q, g, 12)[0])
    assert list(found.indices[0]) == list(range(10, 22)) and found.distances[0].max() == 0


def test_cancellation_never_gives_negative_or_wrong_order():
    """Large norms, tiny differences: the expansion alone goes negative; the re-scoring fixes it."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=64) * 1000
    g = (base + rng.normal(scale=1e-2, size=(200, 64))).astype(np.float32)
    q = g[:20] + np.float32(1e-3)
    found = nearest_neighbors(q, g, k=3)
    assert (found.distances >= 0).all()
    np.testing.assert_array_equal(found.indices[:, 0], np.arange(20))
    np.testing.assert_allclose(found.distances, brute_force(q, g, 3)[1], rtol=1e-3)


def test_chunking_over_queries_does_not_change_the_answer(monkeypatch):
    rng = np.random.default_rng(2)
    g, q = rng.normal(size=(100, 8)), rng.normal(size=(33, 8))
    ref = nearest_neighbors(q, g, k=4)
    monkeypatch.setattr(nbr, "CHUNK_ELEMENTS", 500)  # 5 queries per chunk
    again = nearest_neighbors(q, g, k=4)
    np.testing.assert_array_equal(again.indices, ref.indices)


def test_pixel_space_is_the_flattened_model_input(shapes_model):
    data = cw.image_dataset("shapes", n=30, seed=8)
    x = shapes_model.to_input(list(data.images)).reshape(30, -1).numpy()
    found = nearest_neighbors(data.images[:4], data, k=3, space="pixel", model=shapes_model)
    idx, dist = brute_force(x[:4], x, 3)
    np.testing.assert_array_equal(found.indices, idx)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-4)
    assert list(found.indices[:, 0]) == [0, 1, 2, 3]  # each query finds itself first


@pytest.fixture(scope="module")
def shapes_split():
    data = cw.image_dataset("shapes", n=480, seed=11)
    return data.images[:80], data.labels[:80], cw.image_dataset(data.images[80:], data.labels[80:])


def test_feature_neighbours_share_the_shape_pixel_neighbours_do_not(shapes_model, shapes_split):
    """The lecture's slide, measured: label agreement of the 5 nearest neighbours (chance = 1/8)."""
    queries, labels, gallery = shapes_split
    agree = {}
    for space in ("feature", "pixel"):
        found = nearest_neighbors(queries, gallery, k=5, space=space, model=shapes_model)
        agree[space] = float((gallery.labels[found.indices] == labels[:, None]).mean())
    assert agree["feature"] >= 0.9, agree
    assert agree["pixel"] <= 0.35, agree  # near chance (0.125)


def test_pixel_neighbours_share_colour_more_than_feature_neighbours(shapes_model, shapes_split):
    queries, _labels, gallery = shapes_split
    mean_colour = lambda imgs: imgs.reshape(len(imgs), -1, 3).mean(1)
    gap = {}
    for space in ("feature", "pixel"):
        found = nearest_neighbors(queries, gallery, k=5, space=space, model=shapes_model)
        diff = mean_colour(gallery.images[found.indices.ravel()]) - np.repeat(mean_colour(queries), 5, axis=0)
        gap[space] = float(np.linalg.norm(diff, axis=1).mean())
    assert gap["pixel"] < 0.6 * gap["feature"], gap


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=11), "between 1 and the gallery size"),
    (dict(k=0), "between 1 and the gallery size"),
    (dict(space="colour"), "space must be"),
])
def test_bad_arguments(kwargs, match):
    g = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match=match):
        nearest_neighbors(g[:2], g, **kwargs)


def test_nan_and_mismatched_dimensions():
    g = np.ones((10, 3), np.float32)
    bad = g.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="gallery vectors contain NaN"):
        nearest_neighbors(g[:2], bad, k=2)
    with pytest.raises(ValueError, match="3 dimensions but gallery vectors have 4"):
        nearest_neighbors(g[:2], np.ones((5, 4)), k=2)
    with pytest.raises(ValueError, match="need a model"):
        nearest_neighbors(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((4, 8, 8, 3), np.uint8), k=1)
    assert nearest_neighbors(torch.ones(1, 3), g, k=1).indices.tolist() == [[0]]


# --- the two-stage selection (block minima, then a top-k over the chosen blocks) ----------------------

def _topk_values(scores, width):
    return scores.topk(width, dim=1, largest=False, sorted=True).values


@pytest.mark.parametrize("case", ["random", "all_in_one_set", "all_in_one_block", "ties", "descending"])
@pytest.mark.parametrize("select", [lambda s, w: nbr.smallest(s, w, lanes=8, group=4),
                                    lambda s, w: nbr.smallest_in_blocks(s, w, block=32)], ids=["sets", "blocks"])
def test_smallest_gives_the_same_values_as_a_full_topk(case, select):
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.normal(size=(30, 4096)).astype(np.float32))
    if case == "all_in_one_set":        # the best 16 all in strided set 5 (columns 5, 517, 1029, ...)
        scores[:, 5::512] -= 100
    elif case == "all_in_one_block":    # ... or all in contiguous columns 224..255
        scores[:, 7 * 32:8 * 32] -= 100
    elif case == "ties":                # 3 distinct values: ties everywhere, also across the boundary
        scores = torch.from_numpy(rng.integers(0, 3, size=(30, 4096)).astype(np.float32))
    elif case == "descending":
        scores = torch.arange(4096.0).flip(0).repeat(30, 1)
    values, columns = select(scores, 16)
    torch.testing.assert_close(values, _topk_values(scores, 16), rtol=0, atol=0)
    torch.testing.assert_close(scores.gather(1, columns), values, rtol=0, atol=0)  # columns hold those values
    assert all(len(set(row)) == 16 for row in columns.tolist())                     # no column twice


def test_score_buffer_rows_are_never_a_multiple_of_1_kib_apart():
    assert nbr._score_buffer(torch.empty(0), 3, 1000).stride() == (1000, 1)
    padded = nbr._score_buffer(torch.empty(0), 3, 1024)
    assert padded.shape == (3, 1024) and padded.stride() == (1040, 1)


def test_scorer_pads_the_gallery_with_scores_that_are_never_chosen():
    g = torch.randn(1100, 5)                      # 1100 = 4 x 256 + 76: padded to 1280 columns
    scorer = nbr.Scorer(g, unit=nbr.LANES * nbr.GROUP)
    assert nbr.LANES * nbr.GROUP == 256 and scorer.columns == 1280
    q = torch.randn(3, 5)
    scores = scorer.scores(q, torch.empty(3, scorer.columns))
    torch.testing.assert_close(scores[:, :1100], g.pow(2).sum(1) - 2 * q @ g.T, rtol=1e-5, atol=1e-4)
    assert torch.isinf(scores[:, 1100:]).all()


@pytest.mark.parametrize("seed, n", [(0, 1003), (1, 1024)])
def test_block_selection_path_gives_the_brute_force_answer(monkeypatch, seed, n):
    """Small blocks so the two-stage path runs on a small gallery: exact indices, ties in index order.
    1003 columns are padded to whole blocks; 1024 columns (4 KiB rows) get a wider buffer row stride."""
    monkeypatch.setattr(nbr, "LANES", 2)
    monkeypatch.setattr(nbr, "GROUP", 2)
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, size=(n, 6)).astype(np.float32)       # many exact ties
    g[500:540] = g[500]                                           # 40 copies in a row: ties across blocks
    q = np.concatenate([g[500:501], rng.integers(0, 4, size=(30, 6)).astype(np.float32)])
    found = nearest_neighbors(q, g, k=12)
    idx, dist = brute_force(q, g, 12)
    np.testing.assert_array_equal(found.indices, idx)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-6)
    assert list(found.indices[0]) == list(range(500, 512))


def _fold(keep, products, norms, width, sets, columns):
    """keep_smallest over a product matrix cut into tiles of ``columns``, as knn does."""
    best = np.full((len(products), width), np.inf, dtype=products.dtype)
    where = np.zeros((len(products), width), dtype=np.int64)
    minima = np.empty(sets, dtype=products.dtype)
    for first in range(0, products.shape[1], columns):
        keep(np.ascontiguousarray(products[:, first:first + columns]), first, sets, norms, best, where, minima)
    return best, where


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "numba"])
@pytest.mark.parametrize("case", ["random", "all_in_one_set", "ties", "descending", "padded", "wide"])
def test_keep_smallest_folds_tiles_into_the_same_values_as_a_full_topk(case, compiled):
    """The tile selection (plain Python and numba-compiled): the width smallest of products + norms in each
    row over all its tiles, whatever order they come in, with +inf padding, and with more slots than sets."""
    from cnnviz_widgets.core import jit
    keep = jit.compiled("keep_smallest") if compiled else jit.keep_smallest
    rng = np.random.default_rng(4)
    width, sets, columns = 12, 16, 64                     # tiles of 4 lanes x 16 sets, 8 tiles
    products = rng.normal(size=(25, 512)).astype(np.float32)
    norms = rng.uniform(0, 2, size=512).astype(np.float32)
    if case == "all_in_one_set":        # the best 8 all in set 5 of tile 3 (columns 197, 213, ...) and of tile 6
        products[:, [197, 213, 229, 245, 389, 405, 421, 437]] -= 100
    elif case == "ties":
        products = rng.integers(0, 3, size=(25, 512)).astype(np.float32)
        norms = rng.integers(0, 2, size=512).astype(np.float32)
    elif case == "descending":          # every tile beats the last: the most insertions
        products, norms = np.tile(np.arange(512, dtype=np.float32)[::-1], (25, 1)), np.zeros(512, np.float32)
    elif case == "padded":              # the last 40 columns are padding: +inf norms over finite products
        norms[472:] = np.inf
    elif case == "wide":                # width > sets: no cold bound from the set minima
        width = 20
    best, where = _fold(keep, products, norms, width, sets, columns)
    scores = products + norms
    ref = torch.from_numpy(scores).topk(width, dim=1, largest=False, sorted=True).values.numpy()
    np.testing.assert_array_equal(best, ref)
    np.testing.assert_array_equal(np.take_along_axis(scores, where, 1), best)   # the columns hold those values
    assert all(len(set(row)) == width for row in where.tolist())                 # no column twice
    assert where.max() < (472 if case == "padded" else 512)


@pytest.mark.parametrize("compiled", [False, True], ids=["python", "numba"])
def test_candidate_distances_are_the_exact_squared_distances(compiled):
    from cnnviz_widgets.core import jit
    rescore = jit.compiled("candidate_distances") if compiled else jit.candidate_distances
    rng = np.random.default_rng(6)
    g = (rng.normal(size=64) * 1000 + rng.normal(scale=1e-2, size=(50, 64))).astype(np.float32)
    q = g[:7] + np.float32(1e-3)
    index = rng.integers(0, 50, size=(7, 5))
    out = np.empty((7, 5), np.float32)
    rescore(q, g, index, out)
    ref = ((q[:, None, :].astype(np.float64) - g[index].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(out, ref, rtol=1e-5)                 # the expansion would lose every digit here


@pytest.mark.parametrize("seed", [0, 1])
def test_tiled_path_gives_the_brute_force_answer(monkeypatch, seed):
    """The CPU path for large searches (products in tiles, compiled selection), shrunk to run on a small
    gallery: exact indices with ties in index order, including ties past the candidates, and uneven tiles."""
    monkeypatch.setattr(nbr, "TILED_MIN_SCORES", 0)
    monkeypatch.setattr(nbr, "TILE_COLUMNS", 200)     # 1003 items -> 6 tiles of 192 columns (6 sets each), the last
                                                      # with 43 items and 149 padding columns
    monkeypatch.setattr(nbr, "TILE_ROWS", 7)          # 31 queries -> 5 row blocks, the last of 3
    monkeypatch.setattr(nbr, "LANES", 32)
    used = []
    real = nbr._tiled_candidates
    monkeypatch.setattr(nbr, "_tiled_candidates", lambda *a: used.append(1) or real(*a))
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, size=(1003, 6)).astype(np.float32)   # many exact ties
    g[500:540] = g[500]                                           # 40 copies in a row: ties across tiles
    q = np.concatenate([g[500:501], rng.integers(0, 4, size=(30, 6)).astype(np.float32)])
    assert nbr.tile_columns(1003) == 192
    found = nearest_neighbors(q, g, k=12)
    idx, dist = brute_force(q, g, 12)
    assert used
    np.testing.assert_array_equal(found.indices, idx)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-6)
    assert list(found.indices[0]) == list(range(500, 512))


def test_tiled_path_is_exact_under_cancellation_and_for_float64(monkeypatch):
    monkeypatch.setattr(nbr, "TILED_MIN_SCORES", 0)
    monkeypatch.setattr(nbr, "TILE_COLUMNS", 64)
    rng = np.random.default_rng(1)
    base = rng.normal(size=64) * 1000
    g = base + rng.normal(scale=1e-2, size=(200, 64))
    for dtype in (np.float32, np.float64):                # knn keeps float64 (nearest_neighbors casts to float32)
        q = g[:20].astype(dtype) + dtype(1e-3)
        query = torch.from_numpy(q).requires_grad_()     # vectors still attached to a graph are fine too
        found = nbr.knn(query, torch.from_numpy(g.astype(dtype)), k=3)
        np.testing.assert_array_equal(found.indices[:, 0], np.arange(20))
        np.testing.assert_allclose(found.distances, brute_force(q, g.astype(dtype), 3)[1], rtol=1e-3)


def test_without_numba_the_search_takes_the_torch_path(monkeypatch):
    from cnnviz_widgets.core import jit
    monkeypatch.setattr(nbr, "TILED_MIN_SCORES", 0)
    monkeypatch.setattr(jit, "compiled", lambda name: None)
    monkeypatch.setattr(nbr, "_tiled_candidates", lambda *a: pytest.fail("tiled path without numba"))
    rng = np.random.default_rng(3)
    g, q = rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    np.testing.assert_array_equal(nearest_neighbors(q, g, k=5).indices, brute_force(q, g, 5)[0])


def test_tiled_path_splits_query_blocks_over_threads_and_puts_torch_s_thread_count_back(monkeypatch):
    """One worker per torch thread, each running its products on one thread; afterwards the caller and
    any new thread see torch's thread count as before, and one torch thread gives the same answer."""
    import threading
    monkeypatch.setattr(nbr, "TILED_MIN_SCORES", 0)
    monkeypatch.setattr(nbr, "TILE_COLUMNS", 100)
    monkeypatch.setattr(nbr, "TILE_ROWS", 8)
    workers, real = [], nbr._fold_blocks

    def spy(*args):
        workers.append((threading.current_thread().name, torch.get_num_threads(), args[5]))
        return real(*args)
    monkeypatch.setattr(nbr, "_fold_blocks", spy)
    rng = np.random.default_rng(8)
    g, q = rng.normal(size=(700, 16)).astype(np.float32), rng.normal(size=(37, 16)).astype(np.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        found = nearest_neighbors(q, g, k=6)
        assert torch.get_num_threads() == 2
        seen = []
        fresh = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        fresh.start(), fresh.join()
        assert seen == [2]
        assert sorted(w[0].startswith("cnnviz-knn") for w in workers) == [True, True]
        assert all(w[1] == 1 for w in workers)                       # each worker's products on one thread
        assert sorted(s for w in workers for s in w[2]) == list(range(0, 37, 7))   # 6 blocks of 7, 3 each
        torch.set_num_threads(1)
        workers.clear()
        again = nearest_neighbors(q, g, k=6)
        assert [w[0] for w in workers] == [threading.current_thread().name]   # inline, no worker
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(found.indices, brute_force(q, g, 6)[0])
    np.testing.assert_array_equal(again.indices, found.indices)
