import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core.hooks import frozen


class TwoLayer(nn.Module):
    """Fixed weights, so activations and gradients can be checked by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.conv.weight.data.fill_(2.0)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 1, bias=False)
        self.head.weight.data = torch.tensor([[1.0, -1.0, 3.0, 0.5]])

    def forward(self, x):
        return self.head(torch.flatten(self.act(self.conv(x)), 1))


def test_list_layers_gives_names_kinds_and_shapes(resnet18_random):
    layers = cw.list_layers(resnet18_random)
    by_name = {info.name: info for info in layers}
    assert by_name["conv1"].kind == "Conv2d" and by_name["conv1"].shape == (64, 112, 112)
    assert by_name["layer4"].shape == (512, 7, 7) and by_name["fc"].shape == (1000,)
    convs = cw.list_layers(resnet18_random, nn.Conv2d)
    assert len(convs) == 20 and all(info.kind == "Conv2d" for info in convs)
    assert "conv1" in repr(layers) and "<table>" in layers._repr_html_()


def test_wrong_layer_name_lists_close_matches(resnet18_random):
    with pytest.raises(ValueError) as info:
        cw.get_layer(resnet18_random, "layer4.1.conv3")
    assert "'layer4.1.conv2'" in str(info.value) and "list_layers" in str(info.value)


def test_capture_records_exact_activation_and_gradient():
    model = TwoLayer()
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]], requires_grad=True)
    with cw.capture(model, ["conv", "head"], grad=True) as rec:
        out = model(x)
        out.sum().backward()
    # conv output is 2x, recorded BEFORE the in-place ReLU overwrote it downstream
    torch.testing.assert_close(rec["conv"], torch.tensor([[[[2.0, -4.0], [6.0, 1.0]]]]))
    # d out / d conv = head weight where relu passed, 0 where conv output was negative
    torch.testing.assert_close(rec.gradients["conv"], torch.tensor([[[[1.0, 0.0], [3.0, 0.5]]]]))
    torch.testing.assert_close(out, torch.tensor([[2.0 + 0 + 18.0 + 0.5]]))


def test_capture_inputs_gives_the_penultimate_vector():
    model = TwoLayer()
    x = torch.ones(1, 1, 2, 2)
    with cw.capture(model, "head", inputs=True) as rec:
        model(x)
    torch.testing.assert_close(rec["head"], torch.full((1, 4), 2.0))


def test_capture_works_on_densenet_inplace_relus():
    model = cw.load_model("densenet121", weights=None, device="cpu")
    x = torch.randn(1, 3, 64, 64)
    with cw.capture(model, "features.norm5") as rec:
        model.module(x)
    act = rec["features.norm5"]
    assert (act < 0).any()  # the pre-ReLU values survived DenseNet's F.relu(inplace=True)
    reference = model.module.features(x)
    torch.testing.assert_close(act, reference)


def _hook_count(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in module.modules())


def test_no_hook_left_after_100_calls_half_failing(no_hooks_left):
    model = TwoLayer()
    for i in range(100):
        try:
            with cw.capture(model, ["conv", "act", "head"], grad=True, inputs=i % 3 == 0):
                model(torch.randn(1, 1, 2, 2, requires_grad=True)).sum().backward()
                if i % 2:
                    raise RuntimeError("fails mid-way")
        except RuntimeError:
            pass
    assert _hook_count(model) == 0
    no_hooks_left(model)


def test_unknown_layer_fails_before_any_hook_is_added():
    model = TwoLayer()
    with pytest.raises(ValueError, match="no layer named 'conf'"):
        with cw.capture(model, ["conv", "conf"]):
            pass
    assert _hook_count(model) == 0


def test_frozen_restores_mode_and_requires_grad_even_after_an_error():
    model = TwoLayer()
    model.train()
    model.act.eval()  # mixed modes must come back as they were
    model.head.weight.requires_grad_(False)
    with pytest.raises(ZeroDivisionError):
        with frozen(model) as module:
            assert not module.training and not any(p.requires_grad for p in module.parameters())
            1 / 0
    assert model.training and not model.act.training
    assert model.conv.weight.requires_grad and not model.head.weight.requires_grad


def test_leaf_capture_starts_the_graph_at_the_layer():
    model = TwoLayer()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]])  # no grad on the input: only the leaf starts a graph
    with cw.capture(model, "conv", leaf=True) as rec:
        out = model(x)
    act = rec["conv"]
    assert act.is_leaf and act.requires_grad and out.requires_grad
    grad, = torch.autograd.grad(out.sum(), act)
    torch.testing.assert_close(grad, torch.tensor([[[[1.0, 0.0], [3.0, 0.5]]]]))  # same as through the full graph
