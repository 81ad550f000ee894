"""Objectives: values that add and scale, each leaf checked against a hand-computed number."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core.objectives import Objective


def _ctx(**parts):
    base = dict(logits=None, acts={}, input=None, pixels=None, terms={})
    base.update(parts)
    return SimpleNamespace(**base)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 3))
    return cw.load_model(module, class_names=["circle", "square", "star"], input_size=16, device="cpu")


def test_class_score_is_the_logit_before_softmax_summed_over_the_batch(tiny):
    logits = torch.tensor([[1.0, 2.0, -3.0], [0.5, 4.0, 1.0]])
    assert float(cw.class_score(tiny, "square")(_ctx(logits=logits))) == 6.0
    assert float(cw.class_score(tiny, 2)(_ctx(logits=logits))) == -2.0


def test_unknown_class_name_offers_close_matches(tiny):
    with pytest.raises(ValueError, match="'circle'"):
        cw.class_score(tiny, "circel")


def test_channel_is_the_mean_of_one_feature_map_and_neuron_the_centre_unit():
    act = torch.arange(2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)   # channel 1 holds 9..17
    ctx = _ctx(acts={"conv": act})
    assert float(cw.channel("conv", 1)(ctx)) == 13.0
    assert float(cw.neuron_objective("conv", 1)(ctx)) == 13.0            # centre (1, 1) of 9..17
    assert float(cw.neuron_objective("conv", 1, y=0, x=2)(ctx)) == 11.0
    assert float(cw.neuron_objective("fc", 2)(_ctx(acts={"fc": torch.tensor([[1.0, 2.0, 7.0]])}))) == 7.0


def test_channel_at_a_layer_without_spatial_output_says_so():
    ctx = _ctx(acts={"fc": torch.zeros(1, 10)})
    with pytest.raises(ValueError, match="no spatial output"):
        cw.channel("fc", 3)(ctx)
    with pytest.raises(ValueError, match="no spatial output"):
        cw.neuron_objective("fc", 3, y=0, x=0)(ctx)
    with pytest.raises(ValueError, match="4 channels"):
        cw.channel("conv", 9)(_ctx(acts={"conv": torch.zeros(1, 4, 2, 2)}))
    with pytest.raises(ValueError, match="outside"):
        cw.neuron_objective("conv", 0, y=5, x=0)(_ctx(acts={"conv": torch.zeros(1, 4, 2, 2)}))


def test_l2_and_total_variation_match_hand_computed_values():
    x = torch.tensor([[1.0, 2.0], [4.0, 8.0]]).view(1, 1, 2, 2)
    ctx = _ctx(input=x)
    assert float(cw.l2()(ctx)) == 1 + 4 + 16 + 64
    # vertical (4-1)^2 + (8-2)^2 = 45, horizontal (2-1)^2 + (8-4)^2 = 17
    assert float(cw.total_variation()(ctx)) == 62.0


def test_deepdream_is_half_the_sum_of_squares():
    act = torch.tensor([[1.0, -2.0, 3.0]])
    assert float(cw.deepdream("l")(_ctx(acts={"l": act}))) == 7.0


def test_objectives_add_scale_and_record_their_terms(tiny):
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    x = torch.ones(1, 1, 2, 2)
    obj = cw.class_score(tiny, "star") - 0.5 * cw.l2() + 2 * cw.total_variation() / 4
    ctx = _ctx(logits=logits, input=x)
    assert float(obj(ctx)) == 3.0 - 0.5 * 4.0 + 0.0
    assert ctx.terms == {"class_score(star)": 3.0, "l2": 4.0, "total_variation": 0.0}
    assert float((-obj)(_ctx(logits=logits, input=x))) == -1.0
    assert float((1 + cw.l2())(ctx)) == 5.0
    assert obj.layers == frozenset()
    assert (cw.channel("a", 0) + cw.deepdream("b")).layers == {"a", "b"}
    assert "l2" in obj.name and "class_score(star)" in obj.name


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="scaled by a number"):
        cw.l2() * "2"
    with pytest.raises(ValueError, match="channel must be an int"):
        cw.channel("conv", -1)
    assert isinstance(cw.l2(), Objective)


def test_a_list_of_classes_scores_image_i_for_class_i(tiny):
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert float(cw.class_score(tiny, ["star", "circle"])(_ctx(logits=logits))) == 3.0 + 4.0
    with pytest.raises(ValueError, match="batch=3"):
        cw.class_score(tiny, [0, 1, 2])(_ctx(logits=logits))
