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
    scorer = nbr.Scorer(g)
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
    assert nbr.Scorer(torch.from_numpy(g)).columns == -(-n // 4) * 4
    found = nearest_neighbors(q, g, k=12)
    idx, dist = brute_force(q, g, 12)
    np.testing.assert_array_equal(found.indices, idx)
    np.testing.assert_allclose(found.distances, dist, rtol=1e-6)
    assert list(found.indices[0]) == list(range(500, 512))
