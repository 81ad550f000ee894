"""NeighborsExplorer and EmbeddingScatter driven without a browser: set a trait, run the job, check bytes."""
import io

import numpy as np
import pytest
import traitlets as t
from PIL import Image

import cnnviz_widgets as cw
from cnnviz_widgets.widgets.scatter import EmbeddingScatter, atlas_image, render_scatter, thumb_size


@pytest.fixture(scope="module")
def data():
    return cw.image_dataset("shapes", n=160, seed=21)


@pytest.fixture(scope="module")
def feats(shapes_model, data):
    return cw.extract_features(shapes_model, data)


def test_explorer_rows_show_feature_neighbours_sharing_the_shape(shapes_model, data):
    view = cw.NeighborsExplorer(shapes_model, data, k=6)
    assert view.job.join(60) and view.error.value == ""
    feature_nn, pixel_nn = view.neighbors()
    assert view.query not in feature_nn.indices[0] and feature_nn.indices.shape == (1, 6)
    label = data.labels[0]
    assert (data.labels[feature_nn.indices[0]] == label).mean() > (data.labels[pixel_nn.indices[0]] == label).mean()
    before = view.feature_row.value, view.status.value
    view.query = 7
    assert view.feature_row.value != before[0] and "query #7" in view.status.value
    picture = view.snapshot()
    assert picture.dtype == np.uint8 and picture.ndim == 3


def test_explorer_layer_switch_and_upload(shapes_model, data):
    view = cw.NeighborsExplorer(shapes_model, data, k=4)
    view.job.join(60)
    view.layer = "features.conv2"
    assert view.job.join(60) and view.features.shape == (160, 64)
    png = io.BytesIO()
    Image.fromarray(data.images[3]).save(png, format="PNG")
    import datetime
    upload = {"name": "q.png", "type": "image/png", "size": 1, "content": memoryview(png.getvalue()),
              "last_modified": datetime.datetime.now()}
    view.upload.set_trait("value", (upload,))
    assert view.query == -1 and "uploaded image" in view.status.value
    feature_nn, _ = view.neighbors()
    assert feature_nn.indices[0, 0] == 3 and feature_nn.distances[0, 0] < 1e-3  # the same picture, found


def test_explorer_follows_a_scatter_selection(shapes_model, data, feats):
    view = cw.NeighborsExplorer(shapes_model, data)
    view.job.join(60)
    scatter = EmbeddingScatter(feats, images=data)
    view.follow(scatter)
    scatter.canvas.selected = [42]  # what a click in the browser sends
    assert scatter.selected == [42] and view.query == 42


def test_scatter_sends_points_labels_and_one_atlas(data, feats):
    scatter = EmbeddingScatter(feats, images=data)
    xy = np.frombuffer(scatter.canvas.points, np.float32).reshape(-1, 2)
    np.testing.assert_allclose(xy, cw.embed(feats, "pca"), atol=1e-5)
    np.testing.assert_array_equal(np.frombuffer(scatter.canvas.labels, np.int32), data.labels)
    atlas = np.asarray(Image.open(io.BytesIO(scatter.canvas.atlas)))
    s, cols = scatter.canvas.thumb_size, scatter.canvas.atlas_columns
    np.testing.assert_array_equal(atlas[s:2 * s, 2 * s:3 * s], data.thumbnails(s)[cols + 2])  # thumbnail of point cols+2
    picture = scatter.snapshot()
    assert picture.shape == (480, 640, 3) and (picture != 255).any()


def test_scatter_from_model_streams_tsne_and_colours_by_prediction(shapes_model, data):
    scatter = EmbeddingScatter(shapes_model, data, method="tsne")
    assert scatter.job.join(120) and scatter.error.value == ""
    assert "done" in scatter.status.value and scatter.job.count > 5  # feature batches + t-SNE layouts
    scatter.color_picker.value = "predicted"
    predicted = np.frombuffer(scatter.canvas.labels, np.int32)
    assert (predicted == data.labels).mean() > 0.9  # the embedded model is accurate
    scatter.method_picker.value = "pca"
    assert scatter.method == "pca" and "PCA" in scatter.status.value


def test_scatter_stop_keeps_partial_work(shapes_model, data):
    scatter = EmbeddingScatter(shapes_model, data, method="tsne")
    scatter.stop()
    assert not scatter.job.running and scatter.job.stopped
    assert "stopped" in scatter.status.value or scatter.layouts == {}
    assert hasattr(scatter, "partial_features") and len(scatter.partial_features) >= 1


def test_scatter_sends_a_repeated_layout_once(feats):
    """UMAP's waiting steps repeat the last layout every 0.2 s: the browser gets each layout only once."""
    scatter = EmbeddingScatter(feats)
    sent = []
    scatter.canvas.observe(lambda change: sent.append(change.new), names="points")
    layout = np.random.default_rng(0).normal(size=(len(feats), 2)).astype(np.float32)
    for _ in range(3):
        scatter._show(layout, "UMAP epoch 10/200")
    scatter._show(layout + 1, "UMAP epoch 20/200")
    assert [np.frombuffer(b, np.float32)[0] for b in sent] == [layout[0, 0], layout[0, 0] + 1]


def test_scatter_select_mode_toggle_reaches_the_canvas_and_keeps_the_selection(feats):
    scatter = EmbeddingScatter(feats, select_mode="lasso")
    assert scatter.canvas.select_mode == "lasso" and scatter.mode_picker.value == "lasso"
    scatter.canvas.selected = [3, 5, 8]  # what a shift-drag box in the browser sends
    scatter.mode_picker.value = "box"
    assert scatter.select_mode == scatter.canvas.select_mode == "box"
    scatter.select_mode = "lasso"
    assert scatter.canvas.select_mode == "lasso" and scatter.selected == [3, 5, 8]
    with pytest.raises(t.TraitError):
        scatter.select_mode = "circle"


def test_scatter_bad_input(feats, data):
    with pytest.raises(ValueError, match="160 feature vectors but 20 images"):
        EmbeddingScatter(feats, images=data.images[:20])
    bad = feats.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingScatter(bad)
    with pytest.raises(ValueError, match="labels of shape"):
        EmbeddingScatter(feats, labels=[0, 1])


def test_render_scatter_draws_selection_and_colours():
    xy = np.array([[0, 0], [1, 1]], np.float32)
    pic = render_scatter(xy, np.array([0, 1]), ["#ff0000", "#0000ff"], (100, 100))
    reds = (pic == [255, 0, 0]).all(-1)
    blues = (pic == [0, 0, 255]).all(-1)
    assert reds.any() and blues.any()
    assert np.argwhere(reds).mean(0)[0] > np.argwhere(blues).mean(0)[0]  # y up: point 0 lower on screen
    assert thumb_size(100) == 32 and thumb_size(100_000) >= 8
    png, cols = atlas_image(np.zeros((5, 8, 8, 3), np.uint8))
    assert cols == 3 and Image.open(io.BytesIO(png)).size == (24, 16)
