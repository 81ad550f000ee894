"""Which pixels matter: saliency, SmoothGrad, guided backprop, Grad-CAM and guided Grad-CAM.

Shapes: one image in (PIL, array (H, W, 3), path, 3-D tensor) gives one map (H, W); a batch in (4-D
tensor taken as preprocessed model input, 4-D array or list of images) gives (N, H, W).  Maps are
float32 numpy arrays at the model's input size, not normalized (render.heatmap normalizes for display).
``raw=True`` gives each method's raw result instead:

    saliency, guided_backprop, guided_grad_cam   signed input gradient (N, 3, H, W)  [(3, H, W) single]
    grad_cam                                     map at the layer's resolution (N, h, w)  [(h, w) single]

Class scores are logits (before softmax).  Every method runs inside ``frozen(model)``: the model comes
back with its modes and ``requires_grad`` flags, without hooks and without patched ReLUs, also after
an error.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .hooks import capture, frozen
from .layers import get_layer
from .models import as_model
from .targets import check_target, forward_scores, is_batch

__all__ = ["saliency", "guided_backprop", "grad_cam", "guided_grad_cam", "guided_relus"]


# --- plain gradients ---------------------------------------------------------------------------

def input_gradient(vm, x: torch.Tensor, target) -> torch.Tensor:
    """d score / d input for a batch (N, 3, H, W); one forward and one backward, weights frozen."""
    x = x.detach().clone().requires_grad_(True)
    scores, _ = forward_scores(vm, x, target)
    grad, = torch.autograd.grad(scores.sum(), x)
    return grad


def _smooth_gradient(vm, x, target, smooth: int, noise: float, absolute: bool) -> torch.Tensor:
    """Mean over ``smooth`` noisy copies (sigma = noise * (max - min) of each image), as in SmoothGrad."""
    if target is None:  # the noisy copies explain the clean image's top-1 class
        with torch.no_grad():
            target = vm.module(x).argmax(1)
    sigma = noise * (x.amax((1, 2, 3)) - x.amin((1, 2, 3))).view(-1, 1, 1, 1)
    total = torch.zeros_like(x)
    for _ in range(smooth):
        grad = input_gradient(vm, x + sigma * torch.randn_like(x), target)
        total += grad.abs() if absolute else grad
    return total / smooth


def _finish(maps: torch.Tensor, batch: bool):
    out = maps.detach().float().cpu().numpy()
    return out if batch else out[0]


def _abs_max(grad: torch.Tensor) -> torch.Tensor:
    return grad.abs().amax(1)


def saliency(model, image, target=None, smooth: int = 0, noise: float = 0.15, raw: bool = False):
    """|d class score / d pixel|, max over RGB (Simonyan et al. 2014); ``smooth=n`` averages n noisy
    copies (SmoothGrad).  (H, W) for one image, (N, H, W) for a batch; raw: signed gradient (N, 3, H, W).

        m = cw.saliency(model, image)                    # top-1 class
        m = cw.saliency(model, image, target="star", smooth=25)
    """
    vm, x, batch = _prepare(model, image, target)
    _check_smooth(smooth, noise)
    with frozen(vm):
        if smooth:
            grad = _smooth_gradient(vm, x, target, smooth, noise, absolute=not raw)
        else:
            grad = input_gradient(vm, x, target)
    return _finish(grad if raw else _abs_max(grad), batch)


# --- guided backprop ---------------------------------------------------------------------------

class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients, and only where the input was positive."""

    @staticmethod
    def forward(ctx, x):
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        return grad.clamp_min(0) * (out > 0)  # positive gradients, where the ReLU was open


class _GuidedReLUInplace(_GuidedReLU):
    """In-place twin (DenseNet's relu(inplace=True)): the input tensor itself becomes the output."""

    @staticmethod
    def forward(ctx, x):
        x.clamp_min_(0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x


_RELUS = {F.relu, torch.relu, torch.Tensor.relu}
_RELUS_INPLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}


class guided_relus(TorchFunctionMode):  # noqa: N801 -- used as a context, like torch.no_grad
    """Inside the block every ReLU call is a guided ReLU: ``nn.ReLU`` (it calls F.relu), ``F.relu``,
    ``torch.relu``, ``Tensor.relu`` and their in-place forms.  Peers that hook ``nn.ReLU`` modules
    miss functional ReLUs (DenseNet's last one, most hand-written models) and mishandle in-place
    ones; intercepting the call covers both.  Thread-local, and gone when the block exits.

        with cw.core.attribution.guided_relus():
            grad = torch.autograd.grad(model(x)[0, c], x)[0]
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELUS_INPLACE or (func is F.relu and kwargs.get("inplace", False)):
            return _GuidedReLUInplace.apply(args[0])
        if func in _RELUS:
            return _GuidedReLU.apply(args[0])
        return func(*args, **kwargs)


def _guided_gradient(vm, x, target) -> torch.Tensor:
    with guided_relus():
        return input_gradient(vm, x, target)


def guided_backprop(model, image, target=None, raw: bool = False):
    """Gradient where every ReLU lets only positive gradients through (Springenberg et al. 2015):
    the image parts a class or a neuron responds to.  (H, W) or (N, H, W) abs-max over RGB;
    raw: the signed gradient (N, 3, H, W), which shows as an RGB picture.

        m = cw.guided_backprop(model, image, target=cw.neuron("features.conv4", 12))
    """
    vm, x, batch = _prepare(model, image, target)
    with frozen(vm):
        grad = _guided_gradient(vm, x, target)
    return _finish(grad if raw else _abs_max(grad), batch)


# --- Grad-CAM ----------------------------------------------------------------------------------

def layer_grad_cam(vm, x, target, layer: str) -> torch.Tensor:
    """ReLU(sum_k alpha_k A^k), alpha_k = spatial mean of d score / d A^k (Selvaraju et al. 2017): (N, h, w).
    The gradient goes back only as far as the layer, not to the input."""
    # The activation is a leaf: the graph starts at the layer, so neither the forward through the
    # earlier layers nor the backward pays for autograd there.
    with torch.enable_grad(), capture(vm, layer, leaf=True) as rec:
        scores, _ = forward_scores(vm, x.detach(), target)
    act = rec[layer]
    if act.ndim != 4:
        raise ValueError(f"Grad-CAM needs a layer with spatial maps (N, C, H, W); {layer!r} gives shape "
                         f"{tuple(act.shape)}. Choose a conv layer (cw.list_layers(model))")
    grad, = torch.autograd.grad(scores.sum(), act)
    weights = grad.mean((2, 3), keepdim=True)
    return (weights * act).sum(1).clamp_min(0).detach()


def _upsample(cam: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def _cam_layer(vm, layer) -> str:
    layer = layer or vm.cam_layer
    if layer is None:
        raise ValueError(f"{vm.name} has no conv layer for Grad-CAM; pass layer=<name> (cw.list_layers(model))")
    get_layer(vm, layer)
    return layer


def grad_cam(model, image, target=None, layer: str | None = None, raw: bool = False):
    """Grad-CAM at ``layer`` (default: the model's last conv block), upsampled bilinearly to the input
    size: (H, W) or (N, H, W).  raw: at the layer's resolution (h, w) or (N, h, w).

        m = cw.grad_cam(model, image, target="cat")
        m = cw.grad_cam(model, image, layer="layer3", raw=True)
    """
    vm, x, batch = _prepare(model, image, target)
    layer = _cam_layer(vm, layer)
    with frozen(vm):
        cam = layer_grad_cam(vm, x, target, layer)
    return _finish(cam if raw else _upsample(cam, x.shape[2:]), batch)


def guided_grad_cam(model, image, target=None, layer: str | None = None, raw: bool = False):
    """Guided backprop times the upsampled Grad-CAM map: fine detail, class-specific.  (H, W) or
    (N, H, W) abs-max over RGB; raw: the signed product (N, 3, H, W).

        m = cw.guided_grad_cam(model, image, target="dog")
    """
    vm, x, batch = _prepare(model, image, target)
    layer = _cam_layer(vm, layer)
    with frozen(vm):
        if target is None:
            with torch.no_grad():
                target = vm.module(x).argmax(1)
        cam = _upsample(layer_grad_cam(vm, x, target, layer), x.shape[2:])
        grad = _guided_gradient(vm, x, target) * cam[:, None]
    return _finish(grad if raw else _abs_max(grad), batch)


# --- checks ------------------------------------------------------------------------------------

def _prepare(model, image, target):
    vm = as_model(model)
    check_target(vm, target)
    return vm, vm.to_input(image), is_batch(image)


def _check_smooth(smooth, noise) -> None:
    if not isinstance(smooth, int) or isinstance(smooth, bool) or smooth < 0:
        raise ValueError(f"smooth is the number of noisy copies for SmoothGrad (0 = off), got {smooth!r}")
    if not noise >= 0:
        raise ValueError(f"noise is the noise level as a fraction of the input range (e.g. 0.15), got {noise!r}")
