"""Where computation runs: always the model's own device, chosen once when the model is loaded."""
from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The best device available: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (cpu for a module with neither)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
