import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core.models import hub_checkpoint_path


@pytest.fixture
def resnet18_checkpoint(torch_home):
    """A resnet18 state dict written where torch's hub cache looks, as a real download would be."""
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    path = hub_checkpoint_path(weights)
    assert str(path).startswith(torch_home) and path.name == "resnet18-f37072fd.pth"
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    yield state
    path.unlink()


def test_official_weights_load_from_the_hub_cache_offline(resnet18_checkpoint):
    model = cw.load_model("resnet18")
    assert model.weights == "official" and "official ImageNet weights" in model.label
    for key, value in model.module.state_dict().items():
        torch.testing.assert_close(value, resnet18_checkpoint[key], rtol=0, atol=0)
    assert not model.module.training
    assert model.class_names[0] == "tench" and len(model.class_names) == 1000
    assert model.input_size == (224, 224) and model.resize_size == 256


def test_missing_weights_offline_say_where_torch_looks_and_what_works(torch_home):
    with pytest.raises(cw.WeightsUnavailableError) as info:
        cw.load_model("alexnet")
    msg = str(info.value)
    assert os.path.join(torch_home, "hub", "checkpoints", "alexnet-owt-7be5be79.pth") in msg
    assert "load_model('shapes')" in msg and "weights=None" in msg
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg


def test_failed_download_becomes_the_same_clear_error(monkeypatch):
    def no_network(self, *args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)
    with pytest.raises(cw.WeightsUnavailableError, match="name resolution"):
        cw.load_model("squeezenet1_1", offline=False)


def test_random_weights_are_labelled_and_reproducible():
    a = cw.load_model("resnet18", weights=None)
    b = cw.load_model("resnet18", weights=None)
    assert a.weights == "random" and "RANDOM" in a.label
    torch.testing.assert_close(a.module.conv1.weight, b.module.conv1.weight)


@pytest.mark.parametrize("name, shape", [
    ("alexnet", (64, 3, 11, 11)), ("resnet18", (64, 3, 7, 7)), ("resnet101", (64, 3, 7, 7)),
    ("densenet121", (64, 3, 7, 7)), ("vgg16", (64, 3, 3, 3)), ("squeezenet1_1", (64, 3, 3, 3)),
])
def test_first_layer_filters_of_the_course_models(name, shape):
    model = cw.load_model(name, weights=None)
    assert tuple(cw.first_layer_filters(model).shape) == shape
    cw.get_layer(model, model.cam_layer)  # default layers exist
    cw.get_layer(model, model.feature_layer)


def test_weights_from_a_file_are_loaded_safely(tmp_path):
    good = tmp_path / "w.pt"
    torch.manual_seed(5)
    state = torchvision.models.squeezenet1_1().state_dict()
    torch.save(state, good)
    model = cw.load_model("squeezenet1_1", weights=good)
    assert model.weights == "file"
    torch.testing.assert_close(model.module.features[0].weight, state["features.0.weight"])

    evil = tmp_path / "evil.pt"
    torch.save({"x": Path("/etc/passwd")}, evil)  # an arbitrary object: refused by weights_only=True
    with pytest.raises(ValueError, match="not a readable PyTorch weights file"):
        cw.load_model("squeezenet1_1", weights=evil)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        cw.load_model("squeezenet1_1", weights=junk)


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(ValueError, match="'resnet18'"):
        cw.load_model("resnet-18")


def test_embedded_model_is_offline_and_labelled(shapes_model):
    assert shapes_model.weights == "embedded" and shapes_model.class_names == list(cw.SHAPE_CLASSES)
    assert cw.first_layer_filters(shapes_model).shape[0] >= 32
    assert "shapes" in cw.available_models() and "resnet18" in cw.available_models()


class Tiny(nn.Module):
    def __init__(self, conv=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3) if conv else nn.Identity()
        self.fc = nn.LazyLinear(5) if conv else nn.Linear(3 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


def test_user_module_with_explicit_preprocessing():
    model = cw.load_model(Tiny(), class_names=list("abcde"), input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert model.weights == "user" and model.filter_layer == "conv" and model.feature_layer == "fc"
    x = model.preprocess(np.full((8, 8, 3), 255, np.uint8))
    torch.testing.assert_close(x, torch.full((1, 3, 8, 8), 2.0))  # (1 - 0.5) / 0.25
    assert model.class_index("c") == 2


def test_bare_module_gets_numbered_classes_and_keeps_its_mode():
    module = Tiny()
    module.train()
    model = cw.as_model(module)
    assert model.class_names == [f"class {i}" for i in range(5)]
    assert module.training  # as_model never changes the user's module
    assert cw.as_model(module) is model  # wrapped once


def test_model_without_conv_layer_is_a_clear_error():
    model = cw.load_model(Tiny(conv=False), input_size=8)
    with pytest.raises(ValueError, match="no Conv2d layer"):
        cw.first_layer_filters(model)


def test_class_index_checks(shapes_model):
    n = len(shapes_model.class_names)
    assert shapes_model.class_index(shapes_model.class_names[1].upper()) == 1
    with pytest.raises(ValueError, match=f"out of range.*{n} classes"):
        shapes_model.class_index(n)
    with pytest.raises(ValueError, match="unknown class name"):
        shapes_model.class_index("no such shape")


def test_close_class_names_are_offered(resnet18_random):
    with pytest.raises(ValueError, match="black swan"):
        resnet18_random.class_index("black swann")


def test_preprocess_and_deprocess_round_trip(resnet18_random):
    photo = cw.sample_images()["cat"]
    x = resnet18_random.preprocess(photo)
    assert x.shape == (1, 3, 224, 224) and x.device == resnet18_random.device
    view = resnet18_random.view(photo)
    back = resnet18_random.deprocess(x)[0]
    assert back.shape == view.shape and np.abs(back.astype(int) - view).max() <= 1


def test_four_d_tensor_is_taken_as_model_input(resnet18_random):
    x = torch.randn(2, 3, 64, 64)
    assert resnet18_random.to_input(x) is x or torch.equal(resnet18_random.to_input(x), x)
    with pytest.raises(ValueError, match="3-channel"):
        resnet18_random.to_input(torch.randn(1, 4, 8, 8))


def test_device_follows_the_model():
    assert cw.default_device().type in ("cuda", "mps", "cpu")
    model = cw.load_model("shapes", device="cpu")
    assert model.device.type == "cpu" and model.preprocess(np.zeros((64, 64, 3), np.uint8)).device.type == "cpu"
