"""One object that carries what every view needs from a model.

    model = load_model("resnet18")            # torchvision, official ImageNet weights
    model = load_model("shapes")              # the embedded model, shipped with the package
    model = load_model(my_module, class_names=[...], input_size=(32, 32), mean=..., std=...)

A ``VisionModel`` holds the ``nn.Module`` (in eval mode, on its device), its preprocessing and the
inverse, class names, input size, where its weights came from, and the default layers the views
use: the first conv (filters), the Grad-CAM layer (last conv block) and the penultimate features.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import layers as _layers
from .device import default_device, module_device
from .images import load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHT_LABELS = {
    "official": "official ImageNet weights",
    "random": "RANDOM weights (untrained)",
    "embedded": "embedded shapes weights",
    "user": "user weights",
    "file": "weights from a file",
}


@dataclass(frozen=True)
class _Arch:
    filter_layer: str
    cam_layer: str
    feature_layer: str
    feature_input: bool = True  # penultimate vector = the input of feature_layer


# Defaults for the torchvision classifiers the course uses. Any other torchvision classifier works
# too; its defaults are found from its layers (first conv, last conv, last Linear).
TORCHVISION_ARCHS = {
    "alexnet": _Arch("features.0", "features.10", "classifier.6"),  # FC7: 4096-d
    "vgg16": _Arch("features.0", "features.28", "classifier.6"),
    "vgg19": _Arch("features.0", "features.34", "classifier.6"),
    "resnet18": _Arch("conv1", "layer4", "fc"),
    "resnet34": _Arch("conv1", "layer4", "fc"),
    "resnet50": _Arch("conv1", "layer4", "fc"),
    "resnet101": _Arch("conv1", "layer4", "fc"),
    "densenet121": _Arch("features.conv0", "features.norm5", "classifier"),
    "squeezenet1_1": _Arch("features.0", "features.12", "features", feature_input=False),
}


class WeightsUnavailableError(RuntimeError):
    """Official weights are neither in torch's hub cache nor downloadable right now."""


@dataclass
class VisionModel:
    """A classifier plus everything the views need to show what it sees."""

    module: nn.Module
    name: str
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_size: int | None = None  # shorter side before the centre crop (ImageNet: 256 -> 224)
    weights: str = "user"
    filter_layer: str | None = None
    cam_layer: str | None = None
    feature_layer: str | None = None
    feature_input: bool = True
    extras: dict = field(default_factory=dict, repr=False)

    # --- description -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return module_device(self.module)

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    @property
    def label(self) -> str:
        """e.g. 'resnet18 · official ImageNet weights · cpu' (random weights are shouted)."""
        return f"{self.name} · {WEIGHT_LABELS.get(self.weights, self.weights)} · {self.device.type}"

    def __repr__(self) -> str:
        return (f"VisionModel({self.label}, {len(self.class_names)} classes, input {self.input_size}, "
                f"filters={self.filter_layer!r}, grad_cam={self.cam_layer!r}, features={self.feature_layer!r})")

    def to(self, device) -> "VisionModel":
        self.module.to(device)
        return self

    # --- images in and out -----------------------------------------------------------------
    def view(self, image) -> np.ndarray:
        """The image as the model sees it: resized and centre-cropped, uint8 (H, W, 3)."""
        pil = load_image(image)
        h, w = self.input_size
        short = self.resize_size or min(h, w)
        scale = short / min(pil.size)
        size = (max(w, round(pil.size[0] * scale)), max(h, round(pil.size[1] * scale)))
        pil = pil.resize(size, resample=_bilinear())
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        return np.asarray(pil.crop((left, top, left + w, top + h)))

    def preprocess(self, image) -> torch.Tensor:
        """One image (anything ``load_image`` takes) -> normalized (1, 3, H, W) tensor on the model's device."""
        arr = torch.from_numpy(self.view(image).copy()).permute(2, 0, 1).float().div_(255)
        return self.normalize(arr.unsqueeze(0).to(self.device))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) pixels in [0, 1] -> model input."""
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> pixels in [0, 1] (not clipped)."""
        mean, std = self._stats(x)
        return x * std + mean

    def deprocess(self, x: torch.Tensor) -> np.ndarray:
        """Model input (3, H, W) or (N, 3, H, W) -> displayable uint8 (H, W, 3) or (N, H, W, 3)."""
        pixels = self.denormalize(x.detach()).clamp(0, 1).mul(255).round().to(torch.uint8)
        return pixels.movedim(-3, -1).cpu().numpy()

    def to_input(self, images) -> torch.Tensor:
        """A batch for the model: a 4-D float tensor is used as it is (already preprocessed, as in captum);
        one image or a list of images goes through the model's preprocessing."""
        if isinstance(images, torch.Tensor) and images.ndim == 4 and images.is_floating_point():
            self._check_batch(images)
            return images.to(self.device)
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("an empty list of images was given; pass at least one image")
            return torch.cat([self.preprocess(img) for img in images])
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return torch.cat([self.preprocess(img) for img in images])
        return self.preprocess(images)

    # --- classes ---------------------------------------------------------------------------
    def class_index(self, target) -> int:
        """A class given by index or by name -> its index, with a clear error when out of range or unknown."""
        n = len(self.class_names)
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if not 0 <= int(target) < n:
                raise ValueError(f"class index {int(target)} is out of range: {self.name} has {n} classes (0..{n - 1})")
            return int(target)
        if isinstance(target, str):
            return _class_by_name(self.class_names, target)
        raise TypeError(f"a class is an int index or a name, not {type(target).__name__}")

    @torch.no_grad()
    def predict(self, image, k: int = 5) -> list[tuple[int, str, float]]:
        """Top-k (index, name, probability) for one image."""
        probs = self.module(self.to_input(image))[0].softmax(-1)
        top = probs.topk(min(k, probs.numel()))
        return [(int(i), self.class_names[int(i)], float(p)) for p, i in zip(top.values, top.indices)]

    # --- helpers ---------------------------------------------------------------------------
    def _stats(self, x: torch.Tensor):
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return mean, std

    def _check_batch(self, x: torch.Tensor) -> None:
        if x.shape[1] != 3:
            raise ValueError(f"the model takes 3-channel input; got a tensor of shape {tuple(x.shape)} (N, C, H, W)")


def _bilinear():
    from PIL import Image
    return Image.Resampling.BILINEAR


def _class_by_name(names: Sequence[str], target: str) -> int:
    lowered = [n.lower() for n in names]
    key = target.strip().lower()
    if key in lowered:
        return lowered.index(key)
    close = difflib.get_close_matches(key, lowered, n=5, cutoff=0.6)
    close += [n for n in lowered if key in n and n not in close][:5]
    hint = f" Close matches: {', '.join(repr(names[lowered.index(c)]) for c in close[:5])}." if close else ""
    raise ValueError(f"unknown class name {target!r}.{hint}")


# --- loading ---------------------------------------------------------------------------------

def available_models() -> list[str]:
    """Names ``load_model`` knows: the embedded model and the torchvision classifiers."""
    import torchvision

    return ["shapes", *torchvision.models.list_models(module=torchvision.models)]


def load_model(source="shapes", weights="official", device=None, **options) -> VisionModel:
    """A ``VisionModel`` from a name, an ``nn.Module`` or an existing VisionModel.

    ``weights``: "official" (torchvision's ImageNet weights, from the hub cache or downloaded),
    None (random, seeded, labelled as such in every view), or a path to a state-dict file.
    ``device``: default cuda, then mps, then cpu. For a user module pass its preprocessing as
    ``class_names``, ``input_size``, ``mean``, ``std``.

        model = load_model("resnet18")
        model = load_model("vgg16", weights=None)      # random weights, works offline
    """
    device = torch.device(device) if device is not None else None
    if isinstance(source, VisionModel):
        return source.to(device) if device is not None else source
    if isinstance(source, nn.Module):
        return _finish(_wrap_module(source, **options), device)
    if not isinstance(source, str):
        raise TypeError(f"load_model takes a model name or an nn.Module, not {type(source).__name__}")
    if source == "shapes":
        return _finish(_load_shapes(), device)
    return _finish(_load_torchvision(source, weights, **options), device)


def as_model(model) -> VisionModel:
    """A VisionModel for anything a public function accepts (VisionModel or bare nn.Module)."""
    if isinstance(model, VisionModel):
        return model
    if isinstance(model, nn.Module):
        cached = getattr(model, "_cnnviz_model", None)
        if cached is None:
            cached = _wrap_module(model)
            object.__setattr__(model, "_cnnviz_model", cached)  # not a submodule: plain attribute
        return cached
    if isinstance(model, str):
        return load_model(model)
    raise TypeError(f"expected a model from cw.load_model(...) or a torch nn.Module, got {type(model).__name__}")


def _finish(vm: VisionModel, device) -> VisionModel:
    vm.module.eval()
    vm.module.to(device if device is not None else default_device())
    return vm


def _load_shapes() -> VisionModel:
    from . import shapes
    from .shapes_net import load_shapes_net

    module = load_shapes_net()
    return VisionModel(
        module=module, name="shapes", class_names=list(shapes.SHAPE_CLASSES),
        input_size=(shapes.IMAGE_SIZE, shapes.IMAGE_SIZE), mean=tuple(shapes.MEAN), std=tuple(shapes.STD),
        weights="embedded", **{k: v for k, v in shapes.SHAPES_LAYERS.items()},
    )


def _load_torchvision(name: str, weights, *, seed: int = 0, offline: bool | None = None, **_ignored) -> VisionModel:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        close = difflib.get_close_matches(name, known + ["shapes"], n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} cw.available_models() lists all names.")
    meta_weights = torchvision.models.get_model_weights(name).DEFAULT
    kind, state = _weights_state(name, weights, meta_weights, offline)  # before building: fail fast offline
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random weights are reproducible
        module = torchvision.models.get_model(name, weights=None)
    if state is not None:
        module.load_state_dict(state)
    transform = meta_weights.transforms()
    arch = TORCHVISION_ARCHS.get(name) or _discover_arch(module)
    return VisionModel(
        module=module, name=name, class_names=list(meta_weights.meta["categories"]),
        input_size=(transform.crop_size[0], transform.crop_size[0]), mean=tuple(transform.mean),
        std=tuple(transform.std), resize_size=transform.resize_size[0], weights=kind,
        filter_layer=arch.filter_layer, cam_layer=arch.cam_layer, feature_layer=arch.feature_layer,
        feature_input=arch.feature_input,
    )


def _weights_state(name: str, weights, meta_weights, offline) -> tuple[str, dict | None]:
    if weights in ("official", "DEFAULT", "default", True):
        return "official", _official_state_dict(name, meta_weights, offline)
    if weights in (None, "random", False):
        return "random", None
    if isinstance(weights, (str, os.PathLike)):
        return "file", _state_dict_from_file(Path(weights))
    raise ValueError(f"weights must be 'official', None (random) or a file path; got {weights!r}")


def hub_checkpoint_path(weights) -> Path:
    """Where torch's hub cache keeps a torchvision weights file (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _official_state_dict(name: str, weights, offline: bool | None) -> dict:
    path = hub_checkpoint_path(weights)
    if offline is None:
        offline = os.environ.get("CNNVIZ_OFFLINE", "") not in ("", "0")
    if path.exists():
        return _state_dict_from_file(path)
    if not offline:
        try:
            return weights.get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise WeightsUnavailableError(_offline_message(name, weights, path, err)) from None
    raise WeightsUnavailableError(_offline_message(name, weights, path, "offline mode (CNNVIZ_OFFLINE=1)"))


def _offline_message(name, weights, path: Path, reason) -> str:
    return (
        f"the official weights of {name} are not in torch's cache and could not be downloaded ({reason}).\n"
        f"torch looks for them at: {path}\n"
        f"To use them offline, download {weights.url} on a machine with internet and copy the file there "
        f"(or set TORCH_HOME to a folder holding hub/checkpoints/{path.name}).\n"
        f"Meanwhile: load_model('shapes') works offline, and load_model({name!r}, weights=None) gives "
        "the architecture with random weights."
    )


def _state_dict_from_file(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors of many kinds: report them as one clear error
        raise ValueError(f"{path} is not a readable PyTorch weights file ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _discover_arch(module: nn.Module) -> _Arch:
    first = _layers.first_conv(module)
    linear = _layers.last_linear(module)
    cam = _layers.last_conv(module)
    return _Arch(first, cam, linear or cam, feature_input=linear is not None)


def _wrap_module(module: nn.Module, *, class_names=None, input_size=None, mean=None, std=None,
                 name=None, resize_size=None, **_ignored) -> VisionModel:
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    size = _pair(input_size or 224)
    arch = _discover_arch_lenient(module)
    vm = VisionModel(
        module=module, name=name or type(module).__name__, class_names=[], input_size=size,
        mean=tuple(mean or IMAGENET_MEAN), std=tuple(std or IMAGENET_STD), resize_size=resize_size,
        weights="user", filter_layer=arch.filter_layer, cam_layer=arch.cam_layer,
        feature_layer=arch.feature_layer, feature_input=arch.feature_input,
    )
    vm.class_names = list(class_names) if class_names is not None else _numbered_classes(vm)
    return vm


def _discover_arch_lenient(module: nn.Module) -> _Arch:
    try:
        return _discover_arch(module)
    except ValueError:  # no conv layer: views that need one raise their own clear error
        linear = _layers.last_linear(module)
        return _Arch(None, None, linear, feature_input=True)


def _numbered_classes(vm: VisionModel) -> list[str]:
    training = vm.module.training
    try:
        vm.module.eval()
        with torch.no_grad():
            out = vm.module(torch.zeros(1, 3, *vm.input_size, device=vm.device))
    except Exception as err:
        raise ValueError(
            f"could not run {vm.name} on a (1, 3, {vm.input_size[0]}, {vm.input_size[1]}) input ({err}); "
            "pass input_size=(H, W) matching the model"
        ) from None
    finally:
        vm.module.train(training)
    return [f"class {i}" for i in range(out.shape[-1])]


def _pair(size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def with_module(vm: VisionModel, module: nn.Module, **changes) -> VisionModel:
    """A copy of ``vm`` around another module (e.g. a weight-randomized copy for sanity checks)."""
    return replace(vm, module=module, **changes)
