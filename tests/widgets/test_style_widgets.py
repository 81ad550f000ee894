"""GramMatrixView and StyleTransferViewer driven without a browser."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core import style as S
from cnnviz_widgets.core.render import encode


@pytest.fixture(scope="module")
def tiny_model():
    """Two convs with fixed weights: conv1 copies R, G, B into channels 0-2 and 1 - R into channel 3."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        for c in range(3):
            net[0].weight[c, c] = 1.0
        net[0].weight[3, 0] = -1.0
        net[0].bias[3] = 1.0
    return cw.load_model(net, input_size=16, mean=(0, 0, 0), std=(1, 1, 1), device="cpu")


def test_gram_view_shows_the_hand_checked_gram_matrix(tiny_model, no_hooks_left):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    view = cw.GramMatrixView(tiny_model, red, red, layer="1")
    g = view.gram(0)
    # relu(conv1) of pure red: channel 0 = 1, channels 1-3 = 0 everywhere -> G = diag(1, 0, 0, 0)
    assert np.allclose(g, np.diag([1.0, 0, 0, 0]), atol=1e-6)
    assert np.allclose(view.gram(1), g)
    assert "style distance" in view.status.value and "= 0.000" in view.status.value
    no_hooks_left(tiny_model)


def test_gram_view_layer_and_pair_and_second_image(tiny_model):
    view = cw.GramMatrixView(tiny_model, np.full((16, 16, 3), 200, np.uint8), layer="1")
    before = view.gram_images[1].value
    view.pickers[1].dropdown.value = "photo: gravel"
    assert view.gram_images[1].value != before
    view.layer = "3"
    assert view.gram(0).shape == (6, 6) and view.i_slider.max == 5
    maps = view.map_image.value
    view.channel_j = 4
    assert view.map_image.value != maps and "G[0, 4]" in view.pair_label.value
    assert view.snapshot().shape[2] == 3 and view.error.value == ""


def test_gram_view_rejects_a_model_without_spatial_layers():
    model = cw.load_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), input_size=8)
    with pytest.raises(ValueError, match="no layer with"):
        cw.GramMatrixView(model)


@pytest.fixture(scope="module")
def vgg():
    return S.style_model("vgg16")[0]  # offline in tests: the random-weight VGG-16 default, built once


def _small(view, steps=4):
    view.size, view.steps = 48, steps
    return view


def test_viewer_opens_fast_and_labels_the_model():
    view = cw.StyleTransferViewer()
    assert "offline: random-weight VGG-16" in view.title.value
    assert view.inputs_image.value and view.snapshot() is not None
    assert list(view.layer_sliders) == ["features.1", "features.6", "features.11", "features.18"]  # relu1_1 .. relu4_1


def test_run_streams_frames_and_curves_then_saves(vgg, tmp_path):
    view = _small(cw.StyleTransferViewer(model=vgg), steps=4)
    view.run_button.click()
    assert view.job.join(120) and view.job.error is None, view.error.value
    assert len(view.losses) >= 1 and view.losses[-1]["step"] == 3
    assert view.frame_image.value and view.result.shape[2] == 3
    curves = {tr.name: tr.y for tr in view.curves.data}
    assert len(curves["style"]) == len(view.losses) and curves["content"][0] == pytest.approx(0.0, abs=1e-6)
    assert "grayscale" in view.notes.value                     # gravel is a grayscale photo
    assert "resized" in view.notes.value
    assert "done: step 4/4" in view.status.value
    png = view.save_png(str(tmp_path / "a.png"))
    assert Path(png).read_bytes() == encode(view.result)
    gif = view.gif_bytes()
    assert gif[:6] == b"GIF89a"


def test_stop_keeps_the_picture(vgg):
    view = _small(cw.StyleTransferViewer(model=vgg), steps=400)
    view.run()
    while not view.losses and view.job.running:
        view.job.join(0.05)
    view.stop_button.click()
    assert view.job.join(10), "Stop did not stop the run"
    assert view.job.stopped and view.result is not None
    assert "stopped at" in view.status.value and not view.run_button.disabled


@pytest.mark.parametrize("mode,terms", [("texture", {"loss", "style", "tv"}), ("inversion", {"loss", "content", "tv"})])
def test_modes(vgg, mode, terms):
    view = _small(cw.StyleTransferViewer(model=vgg), steps=2)
    view.mode_picker.value = mode
    view.run()
    assert view.job.join(120) and view.job.error is None, view.error.value
    assert set(view.losses[-1]) - {"step"} == terms


def test_errors_are_shown_in_place(vgg):
    view = _small(cw.StyleTransferViewer(model=vgg), steps=2)
    view.png_button.click()
    assert "nothing to save yet" in view.error.value
    view.content_slider.value = 0.001
    view.style_slider.value = 0.01
    view.mode_picker.value = "inversion"
    view.content_weight = 0.0
    view.run()
    view.job.join(60)
    assert "nothing to optimize" in view.error.value and not view.run_button.disabled
