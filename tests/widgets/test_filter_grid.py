import base64
import io

import numpy as np
import pytest
from PIL import Image

import cnnviz_widgets as cw


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_first_view_shows_the_first_conv_as_rgb_tiles(shapes_model):
    grid = cw.FilterGrid(shapes_model)
    n = cw.first_layer_filters(shapes_model).shape[0]
    assert grid.layer == shapes_model.filter_layer
    assert f"{n} filters" in grid.status.value and "RGB" in grid.status.value
    picture = _png(grid.grid_image.value)
    assert picture.ndim == 3 and picture.std() > 10  # real filter tiles, not a blank image


def test_layer_change_redraws_per_input_channel(resnet18_random):
    grid = cw.FilterGrid(resnet18_random)
    before = grid.grid_image.value
    grid.layer_picker.value = "layer1.0.conv1"  # what the dropdown does in the browser
    assert grid.layer == "layer1.0.conv1" and grid.grid_image.value != before
    assert "32 of 64 filters" in grid.status.value and "grayscale" in grid.status.value
    assert grid.error.value == ""


def test_global_scale_changes_the_picture(resnet18_random):
    grid = cw.FilterGrid(resnet18_random)
    before = grid.grid_image.value
    grid.norm_picker.value = "global"
    assert grid.normalize == "global" and grid.grid_image.value != before


def test_selecting_a_filter_enlarges_it(resnet18_random):
    grid = cw.FilterGrid(resnet18_random)
    first = grid.zoom_image.value
    grid.filter_picker.value = 5
    assert grid.zoom_image.value != first and grid.zoom_label.value.startswith("filter 5")
    assert _png(grid.zoom_image.value).shape[0] >= 140  # 7x7 shown large


def test_static_png_in_display_data(shapes_model):
    bundle = cw.FilterGrid(shapes_model)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    picture = _png(base64.b64decode(bundle["image/png"]))
    assert picture.std() > 10


def test_bad_layer_is_refused_and_the_widget_keeps_working(resnet18_random):
    grid = cw.FilterGrid(resnet18_random)
    with pytest.raises(Exception, match="not a conv layer"):
        grid.layer = "fc"
    assert grid.layer == "conv1"
    grid.layer = "layer2.0.conv1"
    assert "layer2.0.conv1" in grid.status.value


def test_model_without_conv_is_refused():
    import torch.nn as nn
    with pytest.raises(ValueError, match="no Conv2d layer"):
        cw.FilterGrid(cw.load_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), input_size=8))
