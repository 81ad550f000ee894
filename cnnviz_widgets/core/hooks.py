"""The one hook context: capture activations (and their gradients) at named layers.

    with capture(model, ["layer4"]) as rec:
        score = model.module(x)[0, 207]
        grad, = torch.autograd.grad(score, rec["layer4"])

Hooks live only inside the ``with`` block and are removed in ``finally``, also when the body raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch

from .layers import get_layer


class Recording:
    """What a ``capture`` block saw: activations by layer name, and gradients once backward ran."""

    def __init__(self) -> None:
        self.activations: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.activations[name]
        except KeyError:
            raise KeyError(
                f"layer {name!r} produced no activation; was the model run inside the capture block?"
            ) from None


@contextmanager
def capture(model, layers: str | Iterable[str], *, inputs: bool = False, grad: bool = False,
            leaf: bool = False) -> Iterator[Recording]:
    """Record each named layer's output (its input with ``inputs=True``) during forward passes.

    Outputs are passed on as a copy, so an in-place op further on (DenseNet's ``relu(inplace=True)``)
    cannot overwrite the recorded activation, and gradients taken with respect to it stay exact.
    With ``grad=True`` the gradient reaching each activation is stored in ``rec.gradients``.
    With ``leaf=True`` each recorded output is a detached tensor that requires grad: autograd then
    records the graph only from that layer on, so a backward to it skips every earlier layer.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    modules = {name: get_layer(model, name) for name in names}  # validate before hooking anything
    rec = Recording()
    handles = []
    try:
        for name, module in modules.items():
            if inputs:
                handles.append(module.register_forward_pre_hook(_input_hook(rec, name, grad)))
            else:
                handles.append(module.register_forward_hook(_output_hook(rec, name, grad, leaf)))
        yield rec
    finally:
        for handle in handles:
            handle.remove()


def _keep(rec: Recording, name: str, tensor: torch.Tensor, grad: bool) -> None:
    rec.activations[name] = tensor
    if grad and tensor.requires_grad:
        tensor.register_hook(lambda g: rec.gradients.__setitem__(name, g))


def _output_hook(rec: Recording, name: str, grad: bool, leaf: bool = False):
    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            return None
        if leaf:
            output = output.detach().requires_grad_(True)
        _keep(rec, name, output, grad)
        return output.clone()
    return hook


def _input_hook(rec: Recording, name: str, grad: bool):
    def hook(_module, inputs):
        if inputs and isinstance(inputs[0], torch.Tensor):
            _keep(rec, name, inputs[0], grad)
    return hook


@contextmanager
def frozen(model) -> Iterator[torch.nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter for the block; both restored in ``finally``.

    Gradients then flow only to the input image, never into the weights, and the user's model comes
    back exactly as it was (training flag per module, requires_grad per parameter).
    """
    module = getattr(model, "module", model)
    modes = {m: m.training for m in module.modules()}
    flags = {p: p.requires_grad for p in module.parameters()}
    try:
        module.eval()
        for p in flags:
            p.requires_grad_(False)
        yield module
    finally:
        for m, training in modes.items():
            m.training = training
        for p, flag in flags.items():
            p.requires_grad_(flag)
