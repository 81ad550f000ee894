"""Layers by their dotted ``named_modules()`` names: listing, lookup with close matches, defaults."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

CONV_TYPES = (nn.Conv2d,)


@dataclass(frozen=True)
class LayerInfo:
    """One named layer: its dotted name, its kind (class name) and its output shape (batch of 1)."""

    name: str
    kind: str
    shape: tuple | None

    def __str__(self) -> str:
        return f"{self.name:<32} {self.kind:<20} {self.shape}"


class LayerList(list):
    """A list of LayerInfo that prints as a table in notebooks and terminals."""

    def __repr__(self) -> str:
        return "\n".join(str(info) for info in self)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{i.name}</code></td><td>{i.kind}</td><td>{i.shape}</td></tr>" for i in self)
        return f"<table><tr><th>layer</th><th>kind</th><th>output shape</th></tr>{rows}</table>"

    @property
    def names(self) -> list[str]:
        return [info.name for info in self]


def _module(model) -> nn.Module:
    return getattr(model, "module", model)


def list_layers(model, kind: type | tuple | None = None) -> LayerList:
    """Every named sub-module with its kind and output shape for one input of the model's size.

        cw.list_layers(model)                 # all layers
        cw.list_layers(model, nn.Conv2d)      # conv layers only
    """
    from .models import as_model  # local: models imports this module

    vm = as_model(model)
    shapes = _output_shapes(vm)
    infos = LayerList()
    for name, module in vm.module.named_modules():
        if not name or (kind is not None and not isinstance(module, kind)):
            continue
        infos.append(LayerInfo(name, type(module).__name__, shapes.get(name)))
    return infos


def get_layer(model, name: str) -> nn.Module:
    """The sub-module called ``name``; a wrong name raises ValueError listing close matches."""
    modules = dict(_module(model).named_modules())
    if isinstance(name, str) and name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"no layer named {name!r} in {type(_module(model)).__name__}.{hint} "
        f"Valid names (cw.list_layers(model) shows all {len(names)}): {_preview(names)}"
    )


def conv_layer_names(model) -> list[str]:
    """Dotted names of all 2-D conv layers, in definition order."""
    return [n for n, m in _module(model).named_modules() if isinstance(m, CONV_TYPES)]


def first_conv(model) -> str:
    names = conv_layer_names(model)
    if not names:
        raise ValueError(
            f"{type(_module(model)).__name__} has no Conv2d layer; this view needs a convolutional network"
        )
    return names[0]


def last_conv(model) -> str:
    first_conv(model)  # same error for a model without conv layers
    return conv_layer_names(model)[-1]


def last_linear(model) -> str | None:
    names = [n for n, m in _module(model).named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def _output_shapes(vm) -> dict[str, tuple]:
    """Output shape of every module for one zero input."""
    from .hooks import capture  # local: hooks imports this module

    names = [name for name, _ in vm.module.named_modules() if name]
    with torch.no_grad(), capture(vm, names) as rec:
        vm.module(torch.zeros(1, 3, *vm.input_size, device=vm.device))
    return {name: tuple(act.shape[1:]) for name, act in rec.activations.items()}
