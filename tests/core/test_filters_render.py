import numpy as np
import pytest
import torch
from PIL import Image
import io

import cnnviz_widgets as cw
from cnnviz_widgets.core import render
from cnnviz_widgets.core.filters import filter_tiles


def test_per_filter_tiles_stretch_each_filter_to_full_range():
    w = torch.zeros(2, 3, 2, 2)
    w[0] = torch.arange(12.0).view(3, 2, 2)        # range 0..11
    w[1] = torch.arange(12.0).view(3, 2, 2) * 0.01  # same pattern, 100x weaker
    tiles = filter_tiles(w, "per_filter")
    assert tiles.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(tiles[0], tiles[1])  # pattern, not magnitude
    assert tiles[0].min() == 0 and tiles[0].max() == 255
    assert tiles[0][0, 0, 0] == 0 and tiles[0][1, 1, 2] == 255  # channel c, row i, col j = 4c + 2i + j
    glob = filter_tiles(w, "global")
    assert glob[1].max() <= 3  # the weak filter stays dark on the global scale


def test_grayscale_tiles_per_input_channel():
    tiles = filter_tiles(torch.randn(4, 5, 3, 3))
    assert tiles.shape == (20, 3, 3) and tiles.dtype == np.uint8
    with pytest.raises(ValueError, match="normalize"):
        filter_tiles(torch.randn(1, 3, 3, 3), "per_pixel")


def test_filter_grid_image_layout(resnet18_random):
    grid = cw.filter_grid_image(resnet18_random)  # 64 tiles of 7x7, scaled x3 -> 21 px, 8 x 8 grid
    assert grid.shape == (8 * 22 + 1, 8 * 22 + 1, 3)


def test_non_conv_layer_is_refused(resnet18_random):
    with pytest.raises(ValueError, match="not a Conv2d"):
        cw.first_layer_filters(resnet18_random, "bn1")


def test_encode_png_and_jpeg_round_trip():
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(render.encode(arr))))
    np.testing.assert_array_equal(back, arr)
    big = np.asarray(Image.open(io.BytesIO(render.encode(arr, scale=3))))
    np.testing.assert_array_equal(big[::3, ::3], arr)
    assert render.encode(arr, "jpeg")[:2] == b"\xff\xd8"


def test_heatmap_and_overlay():
    values = np.array([[0.0, 1.0], [2.0, 4.0]])
    colours = render.heatmap(values, "gray")
    np.testing.assert_array_equal(colours[..., 0], [[0, 64], [128, 255]])
    image = np.full((4, 4, 3), 100, np.uint8)
    out = render.overlay(image, values, alpha=0.0)
    np.testing.assert_array_equal(out, image)
    assert render.overlay(image, values, alpha=1.0, cmap="gray")[0, 0, 0] == 0
    assert render.normalize_map(np.ones((3, 3))).max() == 0  # flat map: no fake contrast
    with pytest.raises(ValueError, match="unknown colormap"):
        render.heatmap(values, "rainbow-ish")


def test_tile_grid_and_tile_at_are_inverse():
    tiles = np.arange(5)[:, None, None].repeat(4, 1).repeat(3, 2).astype(np.uint8) * 40
    grid = render.tile_grid(tiles, columns=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 4 + 1, 3)
    for i in range(5):
        r, q = divmod(i, 3)
        y, x = 1 + r * 5 + 1, 1 + q * 4 + 2
        assert render.tile_at(grid.shape, (4, 3), 5, 3, x, y) == i
        assert grid[y, x, 0] == tiles[i, 0, 0]
    assert render.tile_at(grid.shape, (4, 3), 5, 3, 0, 0) is None  # on the padding
