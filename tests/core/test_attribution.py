"""Saliency, guided backprop, Grad-CAM: equal to captum where captum is right, right where it is not,
pointing at the object on the embedded model, and leaving the model exactly as it was."""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnviz_widgets as cw
from cnnviz_widgets.core.attribution import guided_relus
from cnnviz_widgets.core.occlusion import patch_positions

captum_attr = pytest.importorskip("captum.attr")

REL = 1e-5


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def captum_ready(module):
    """A copy captum can handle: every ReLU a non-in-place module (DenseNet's functional one included)."""
    module = copy.deepcopy(module)
    for m in module.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    if hasattr(module, "features") and type(module).__name__ == "DenseNet":
        module = nn.Sequential(module.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), module.classifier)
        module.renamed = ("features.", "0.")
    return module.eval()


def captum_layer(module, name):
    old, new = getattr(module, "renamed", ("", ""))
    return dict(module.named_modules())[name.replace(old, new, 1)]


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():  # captum warns that it sets hooks / requires_grad
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


ZOO_BATCH = {"resnet18": 2, "vgg16": 1, "densenet121": 1}  # vgg16, densenet121 are heavy: batch 1


@pytest.fixture(scope="module")
def zoo(request):
    """arch -> (VisionModel, input batch): random weights and 64 px inputs to keep CPU time down."""
    cache = {}

    def get(arch):
        if arch not in cache:
            if arch == "shapes":
                vm = request.getfixturevalue("shapes_model")
                cache[arch] = vm, vm.to_input(list(cw.make_shapes(2, seed=777).images))
            else:
                gen = torch.Generator().manual_seed(0)
                vm = cw.load_model(arch, weights=None, device="cpu")
                cache[arch] = vm, torch.randn(ZOO_BATCH[arch], 3, 64, 64, generator=gen)
        return cache[arch]
    return get


@pytest.mark.parametrize("arch", ["resnet18", "vgg16", "densenet121", "shapes"])
def test_equal_to_captum(zoo, arch, no_hooks_left):
    vm, x = zoo(arch)
    target = [3, 1][: len(x)]
    ref_model = captum_ready(vm.module)
    xg = x.clone().requires_grad_(True)

    ours = cw.saliency(vm, x, target=target)
    ref = quiet(captum_attr.Saliency(ref_model).attribute, xg, target=target, abs=True).amax(1)
    assert ours.shape == (len(x), 64, 64) and rel_err(ours, ref) <= REL

    ours = cw.grad_cam(vm, x, target=target, raw=True)
    layer = captum_layer(ref_model, vm.cam_layer)
    ref = quiet(captum_attr.LayerGradCam(ref_model, layer).attribute, xg, target=target, relu_attributions=True)
    assert ours.shape == tuple(ref[:, 0].shape) and rel_err(ours, ref[:, 0].detach()) <= REL

    ours = cw.guided_backprop(vm, x, target=target, raw=True)
    ref = quiet(captum_attr.GuidedBackprop(ref_model).attribute, xg, target=target)
    assert ours.shape == (len(x), 3, 64, 64) and rel_err(ours, ref.detach()) <= REL
    no_hooks_left(vm)


def test_guided_grad_cam_is_guided_backprop_times_upsampled_cam(zoo):
    vm, x = zoo("shapes")
    ours = cw.guided_grad_cam(vm, x, target=2, raw=True)
    ref_model = captum_ready(vm.module)
    ref = quiet(captum_attr.GuidedGradCam(ref_model, ref_model.features.conv4).attribute,
                x.clone().requires_grad_(True), target=2, interpolate_mode="bilinear")
    assert rel_err(ours, ref.detach()) <= REL
    assert cw.guided_grad_cam(vm, x, target=2).shape == (len(x), 64, 64)


# --- guided backprop through functional and in-place ReLUs ---------------------------------------

class ModuleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.relu3(h.mean((2, 3)) * 3))


class FunctionalNet(ModuleNet):
    """The same network written as people write it: F.relu, Tensor.relu and an in-place relu_."""

    def forward(self, x):
        h = F.relu(self.conv2(self.conv1(x).relu()))
        return self.fc((h.mean((2, 3)) * 3).relu_())


@pytest.fixture(scope="module")
def twin_nets():
    torch.manual_seed(1)
    a = ModuleNet().eval()
    b = FunctionalNet().eval()
    b.load_state_dict(a.state_dict())
    return a, b, torch.randn(3, 3, 16, 16)


def test_functional_relu_model_equals_module_model(twin_nets):
    modules, functional, x = twin_nets
    ours_m = cw.guided_backprop(modules, x, target=1, raw=True)
    ours_f = cw.guided_backprop(functional, x, target=1, raw=True)
    plain = cw.saliency(functional, x, target=1, raw=True)
    np.testing.assert_allclose(ours_f, ours_m, rtol=1e-6, atol=1e-7)
    assert rel_err(ours_f, plain) > 0.05, "guided backprop equals the plain gradient: ReLUs were not guided"
    # the peer: captum hooks nn.ReLU modules only, so on the functional model it silently returns the plain gradient
    peer = quiet(captum_attr.GuidedBackprop(functional).attribute, x.clone().requires_grad_(True), target=1)
    assert rel_err(peer.detach(), plain) <= REL
    fixed = copy.deepcopy(modules)
    fixed.relu3.inplace = False
    ref = quiet(captum_attr.GuidedBackprop(fixed).attribute, x.clone().requires_grad_(True), target=1)
    assert rel_err(ours_m, ref.detach()) <= REL


def test_inplace_guided_relu_by_hand():
    """y = sum(w * relu_(x)): the guided gradient is relu(w) where x > 0, else 0."""
    x = torch.tensor([[-1.0, 2.0, 3.0, -4.0]], requires_grad=True)
    w = torch.tensor([[5.0, -6.0, 7.0, 8.0]])
    with guided_relus():
        y = (w * x.clone().relu_()).sum()
        grad, = torch.autograd.grad(y, x)
    assert grad.tolist() == [[0.0, 0.0, 7.0, 0.0]]
    z = torch.tensor([-1.0, 1.0], requires_grad=True)  # outside the block: a plain ReLU again
    g, = torch.autograd.grad((torch.tensor([-2.0, -3.0]) * F.relu(z)).sum(), z)
    assert g.tolist() == [0.0, -3.0]


# --- targets, shapes, batches --------------------------------------------------------------------

def test_targets_and_shapes(shapes_model):
    img = cw.make_shapes(3, seed=778).images
    top = int(shapes_model.predict(img[0], k=1)[0][0])
    single = cw.saliency(shapes_model, img[0])
    assert single.shape == (64, 64) and single.dtype == np.float32
    np.testing.assert_array_equal(single, cw.saliency(shapes_model, img[0], target=top))
    name = shapes_model.class_names[2]
    np.testing.assert_array_equal(cw.grad_cam(shapes_model, img[0], target=name),
                                  cw.grad_cam(shapes_model, img[0], target=2))
    batch = cw.grad_cam(shapes_model, img, target=[0, 1, 2])
    assert batch.shape == (3, 64, 64)
    np.testing.assert_allclose(batch[1], cw.grad_cam(shapes_model, img[1], target=1), rtol=1e-5, atol=1e-6)
    assert cw.grad_cam(shapes_model, img, raw=True).shape == (3, 8, 8)
    assert cw.saliency(shapes_model, img[0], smooth=4).shape == (64, 64)


def test_neuron_target_is_the_gradient_of_that_unit(shapes_model):
    x = shapes_model.to_input(cw.make_shapes(1, seed=779).images[0])
    ours = cw.saliency(shapes_model, x, target=cw.neuron("features.conv3", 5, y=2, x=6), raw=True)
    xg = x.clone().requires_grad_(True)
    trunk = shapes_model.module.features[:9]  # conv1 ... conv3
    assert list(dict(trunk.named_children()))[-1] == "conv3"
    grad, = torch.autograd.grad(trunk(xg)[0, 5, 2, 6], xg)
    np.testing.assert_allclose(ours, grad.numpy(), rtol=1e-5, atol=1e-8)
    # a single unit sees only its receptive field: zero gradient in the far corner
    assert np.abs(ours[0, :, :, :12]).max() == 0 and np.abs(ours).max() > 0
    channel = cw.guided_backprop(shapes_model, x, target=cw.neuron("features.conv4", 7))
    assert channel.shape == (1, 64, 64)


def test_bad_input_raises_clear_errors(shapes_model):
    img = cw.make_shapes(1, seed=780).images[0]
    with pytest.raises(ValueError, match="unknown class name"):
        cw.saliency(shapes_model, img, target="elephant")
    with pytest.raises(ValueError, match="no layer named"):
        cw.guided_backprop(shapes_model, img, target=cw.neuron("features.conv9", 0))
    with pytest.raises(ValueError, match="channel 999 is out of range"):
        cw.saliency(shapes_model, img, target=cw.neuron("features.conv4", 999))
    with pytest.raises(ValueError, match="spatial maps"):
        cw.grad_cam(shapes_model, img, layer="classifier")
    with pytest.raises(ValueError, match="smooth"):
        cw.saliency(shapes_model, img, smooth=-1)
    with pytest.raises(ValueError, match="2 targets were given for a batch of 1"):
        cw.saliency(shapes_model, img[None], target=[1, 2])
    with pytest.raises(TypeError, match="target"):
        cw.saliency(shapes_model, img, target=1.5)


# --- the model comes back as it was --------------------------------------------------------------

def _fail(*_):
    raise RuntimeError("boom mid-forward")


def _state(module):
    return ([m.training for m in module.modules()], [p.requires_grad for p in module.parameters()])


@pytest.mark.parametrize("method", [cw.saliency, cw.guided_backprop, cw.grad_cam, cw.guided_grad_cam])
def test_model_state_restored_also_after_an_error(twin_nets, method, no_hooks_left):
    _, functional, x = twin_nets
    net = copy.deepcopy(functional).train()
    net.conv1.weight.requires_grad_(False)
    before = _state(net)
    method(net, x, target=0)
    assert _state(net) == before
    net.fc.register_forward_pre_hook(_fail)  # a user hook that fails mid-way through the forward pass
    with pytest.raises(RuntimeError, match="boom"):
        method(net, x, target=0)
    assert _state(net) == before
    net.fc._forward_pre_hooks.clear()
    no_hooks_left(net)
    z = torch.tensor([-1.0, 1.0], requires_grad=True)  # no guided ReLU left active
    assert torch.autograd.grad((-F.relu(z)).sum(), z)[0].tolist() == [0.0, -1.0]


# --- pointing game on fresh shapes images -------------------------------------------------------

def dilate(masks: np.ndarray, r: int) -> np.ndarray:
    out = masks.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(masks, dy, 1), dx, 2) & _inside(masks.shape, dy, dx)
    return out


def _inside(shape, dy, dx):
    keep = np.ones(shape[1:], bool)
    keep[: max(dy, 0)] = keep[shape[1] + min(dy, 0):] = False
    keep[:, : max(dx, 0)] = keep[:, shape[2] + min(dx, 0):] = False
    return keep


def hits(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1).argmax(1)
    ys, xs = np.unravel_index(flat, maps.shape[1:])
    return masks[np.arange(len(maps)), ys, xs]


@pytest.fixture(scope="module")
def fresh_shapes():
    data = cw.make_shapes(200, seed=777)  # a seed the embedded model never trained on
    return data, dilate(data.masks, 3)


POINTING = {
    "grad_cam": lambda vm, imgs, t: cw.grad_cam(vm, imgs, target=t),
    "saliency": lambda vm, imgs, t: cw.saliency(vm, imgs, target=t),
    "smoothgrad": lambda vm, imgs, t: cw.saliency(vm, imgs, target=t, smooth=4),
    "guided_backprop": lambda vm, imgs, t: cw.guided_backprop(vm, imgs, target=t),
    "guided_grad_cam": lambda vm, imgs, t: cw.guided_grad_cam(vm, imgs, target=t),
}


def test_pointing_game(shapes_model, fresh_shapes):
    data, masks = fresh_shapes
    x = shapes_model.to_input(list(data.images))
    rates = {name: float(hits(fn(shapes_model, x, data.labels), masks).mean()) for name, fn in POINTING.items()}
    grid = cw.occlusion(shapes_model, x, target=data.labels, patch=12, stride=6, batch_size=256)
    ys = np.array(patch_positions(64, 12, 6)) + 6  # patch centres
    iy, ix = np.unravel_index(grid.reshape(len(grid), -1).argmin(1), grid.shape[1:])  # largest drop
    rates["occlusion"] = float(masks[np.arange(len(grid)), ys[iy], ys[ix]].mean())
    print("pointing game, 200 fresh shapes images, mask dilated by 3 px:",
          {k: round(v, 3) for k, v in rates.items()})
    assert rates["grad_cam"] >= 0.9 and rates["occlusion"] >= 0.9
