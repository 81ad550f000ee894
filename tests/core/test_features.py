"""extract_features: the penultimate vector by hand on a tiny fixed model, pooling, streaming, stopping."""
import numpy as np
import pytest
import torch
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core.features import extract_features, feature_steps


def tiny_model():
    """conv (2 fixed 1x1 filters) -> ReLU -> global average -> Linear(2 -> 3); identity preprocessing."""
    conv = nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.5, 0.5]]).view(2, 3, 1, 1))
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    return cw.load_model(net, input_size=4, mean=(0, 0, 0), std=(1, 1, 1), device="cpu")


def by_hand(images_uint8):
    x = images_uint8.astype(np.float64) / 255  # (N, H, W, 3)
    a = np.maximum(x[..., 0] - x[..., 1], 0).mean(axis=(1, 2))
    b = np.maximum(0.5 * x[..., 1] + 0.5 * x[..., 2], 0).mean(axis=(1, 2))
    return np.stack([a, b], 1)


@pytest.fixture(scope="module")
def pictures():
    return np.random.default_rng(0).integers(0, 256, (11, 4, 4, 3), dtype=np.uint8)


def test_penultimate_vector_matches_hand_computation(pictures):
    feats = extract_features(tiny_model(), pictures, batch_size=4)
    assert feats.dtype == np.float32 and feats.shape == (11, 2)
    np.testing.assert_allclose(feats, by_hand(pictures), rtol=1e-5, atol=1e-6)


def test_conv_layer_is_global_average_pooled(pictures):
    """The conv layer's output before the ReLU, averaged over H and W."""
    x = pictures.astype(np.float64) / 255
    expected = np.stack([(x[..., 0] - x[..., 1]).mean((1, 2)), (0.5 * x[..., 1] + 0.5 * x[..., 2]).mean((1, 2))], 1)
    np.testing.assert_allclose(extract_features(tiny_model(), pictures, layer="0"), expected, rtol=1e-5, atol=1e-6)


def test_batch_size_and_input_form_do_not_change_the_answer(pictures):
    vm = tiny_model()
    ref = extract_features(vm, pictures, batch_size=64)
    # batch size may change BLAS rounding in the last bit, never more
    np.testing.assert_allclose(extract_features(vm, pictures, batch_size=1), ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(extract_features(vm, list(pictures)), ref, atol=1e-7)  # PIL preprocessing path
    tensor = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 255  # preprocessed (identity) input
    np.testing.assert_allclose(extract_features(vm, tensor, batch_size=5), ref, atol=1e-7)


def test_progress_reports_every_batch(pictures):
    seen = []
    extract_features(tiny_model(), pictures, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(4, 11), (8, 11), (11, 11)]


def test_stopping_keeps_rows_done_and_restores_the_model(pictures, no_hooks_left):
    vm = tiny_model()
    vm.module.train()
    steps = feature_steps(vm, pictures, batch_size=3)
    first, second = next(steps), next(steps)
    steps.close()  # what a widget's Stop does
    assert second.done == 6 and second.features.shape == (6, 2)
    np.testing.assert_allclose(second.features, by_hand(pictures[:6]), rtol=1e-5, atol=1e-6)
    assert vm.module.training and all(m.training for m in vm.module.modules())
    no_hooks_left(vm)


def test_shapes_model_features_feed_its_classifier(shapes_model, no_hooks_left):
    """The default vector is exactly what the final Linear reads: classifier(features) == logits."""
    data = cw.image_dataset("shapes", n=12, seed=4)
    feats = extract_features(shapes_model, data, batch_size=5)
    assert feats.shape == (12, 128)
    with torch.no_grad():
        logits = shapes_model.module(shapes_model.to_input(list(data.images)))
        from_feats = shapes_model.module.classifier(torch.from_numpy(feats))
    torch.testing.assert_close(from_feats, logits, rtol=1e-4, atol=1e-4)
    no_hooks_left(shapes_model)


@pytest.mark.parametrize("images, batch_size, match", [
    (np.zeros((0, 4, 4, 3), np.uint8), 8, "empty data set"),
    (np.zeros((2, 4, 4, 3), np.uint8), 0, "batch_size"),
    ("not images", 8, "expected images"),
])
def test_bad_input(images, batch_size, match):
    with pytest.raises((ValueError, TypeError), match=match):
        extract_features(tiny_model(), images, batch_size=batch_size)


def test_unknown_layer_names_close_matches(pictures):
    with pytest.raises(ValueError, match="no layer named"):
        extract_features(tiny_model(), pictures, layer="conv9")
