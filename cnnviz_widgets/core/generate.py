"""Images made by gradient ascent, as in the lecture: class and neuron visualization, fooling images, DeepDream.

    viz = cw.class_visualization(model, "star")                     # viz.image: uint8 (H, W, 3)
    fool = cw.fooling_image(model, image, "circle")                 # fool.image, fool.difference, fool.steps
    dream = cw.deep_dream(model, image, "features.conv3", octaves=3)

Each one-liner runs a ``..._steps`` generator (a stream of ``Step``s from the one loop, ``core.optimize``)
to the end; widgets drive the same generators live.  Defaults follow the lecture (and Yosinski et al. 2015):
L2 penalty, Gaussian blur every few steps, clip pixels with small norm
and with small contribution (by percentile), a little jitter. The lecture starts from the zero image; here
the default start is faint noise around it (``start="noise"``), because on a flat picture the first layer of
many trained networks (the shapes model among them) is entirely silent and the gradient is exactly zero;
``start="zeros"`` is available and says so when that happens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .models import as_model
from .objectives import channel as channel_objective
from .objectives import class_score, deepdream, l2, neuron_objective
from . import optimize as opt
from .optimize import Ascent, Step, as_pixels, resize_pixels, to_uint8_image



@dataclass
class Generated:
    """A picture made by gradient ascent: ``image`` uint8 (H, W, 3) (``images``: the whole batch, (N, H, W, 3)),
    the final objective and its history."""

    image: np.ndarray
    pixels: torch.Tensor
    value: float
    steps: int
    history: list = field(default_factory=list, repr=False)

    @property
    def images(self) -> np.ndarray:
        return np.stack([to_uint8_image(p) for p in self.pixels])


def regularizers(l2_weight=1e-3, blur_every=4, blur_sigma=0.5, norm_percentile=5.0, contribution_percentile=5.0,
                 jitter=2):
    """(penalty objective or None, transforms) for the lecture's regularizers; 0 switches one off.

        penalty, transforms = regularizers(blur_every=0)      # no blur
    """
    transforms = [opt.jitter(jitter)] if jitter else []
    if blur_every and blur_sigma:
        transforms.append(opt.blur_every(blur_every, blur_sigma))
    if norm_percentile:
        transforms.append(opt.clip_small_norm(norm_percentile))
    if contribution_percentile:
        transforms.append(opt.clip_small_contribution(contribution_percentile))
    penalty = l2_weight * l2() if l2_weight else None
    return penalty, transforms


def _regularized_ascent(model, objective, *, steps, lr, optimizer, seed, size, start, param, batch=1,
                        **reg) -> Ascent:
    penalty, transforms = regularizers(**reg)
    if param != "pixels":  # Fourier parameterizations: only jitter and the penalty
        transforms = [t for t in transforms if not t.edits_pixels]
    objective = objective - penalty if penalty is not None else objective
    return Ascent(model, objective, size=size, start=start, param=param, transforms=transforms, lr=lr,
                  optimizer=optimizer, steps=steps, seed=seed, batch=batch)


def class_visualization_steps(model, target, *, steps=100, lr=0.05, optimizer="adam", seed=0, size=None,
                              start="noise", param="pixels", **reg) -> Iterator[Step]:
    """The steps of ``class_visualization`` (for live views); a list of targets makes one image per class."""
    batch = len(target) if isinstance(target, (list, tuple)) else 1
    return _regularized_ascent(model, class_score(model, target), steps=steps, lr=lr, optimizer=optimizer, seed=seed,
                               size=size, start=start, param=param, batch=batch, **reg).steps()


def class_visualization(model, target, **options) -> Generated:
    """I* = argmax_I S_c(I) - lambda ||I||^2, with blur and clipping: the image the model finds most "c".

        viz = cw.class_visualization(model, "star", steps=100)
        Image.fromarray(viz.image)
        every = cw.class_visualization(model, model.class_names)     # one batch, every class: every.images
    Options: steps, lr, optimizer, seed, size, start, param and the regularizers (see ``regularizers``).
    """
    return _finish(class_visualization_steps(model, target, **options))


def neuron_visualization_steps(model, layer, channel, *, y=None, x=None, steps=100, lr=0.05, optimizer="adam",
                               seed=0, size=None, start="noise", param="pixels", **reg) -> Iterator[Step]:
    """The steps of ``neuron_visualization``."""
    objective = channel_objective(layer, channel) if y is None and x is None else neuron_objective(layer, channel, y, x)
    return _regularized_ascent(model, objective, steps=steps, lr=lr, optimizer=optimizer, seed=seed, size=size,
                               start=start, param=param, **reg).steps()


def neuron_visualization(model, layer, channel, **options) -> Generated:
    """The image that most activates channel ``channel`` of ``layer`` (its mean, or one unit with y=, x=).

        viz = cw.neuron_visualization(model, "features.conv3", 7)
    """
    return _finish(neuron_visualization_steps(model, layer, channel, **options))


def _finish(steps: Iterator[Step]) -> Generated:
    history, last = [], None
    for last in steps:
        history.append(last.value)
    return Generated(last.image(), last.pixels, last.value, last.index, history)


# --- fooling images ----------------------------------------------------------------------------

@dataclass
class FoolingResult:
    """The slide's four panels: ``original``, ``image`` (fooled), ``difference`` (image - original, in 0-255
    units, float) and ``difference_image(10)``; the predictions before and after as (index, name, probability)."""

    original: np.ndarray
    image: np.ndarray
    difference: np.ndarray
    steps: int
    target: int
    fooled: bool
    original_prediction: tuple
    fooled_prediction: tuple
    target_probability: tuple  # (before, after)

    @property
    def linf(self) -> float:
        """Largest change of any pixel channel, in 0-255 units."""
        return float(np.abs(self.difference).max())

    def difference_image(self, scale: float = 1.0) -> np.ndarray:
        """uint8 picture of the difference, grey = no change, amplified by ``scale`` (the slide's 10x)."""
        return np.clip(127.5 + scale * self.difference, 0, 255).round().astype(np.uint8)


def fooling_image_steps(model, image, target, *, steps=100, lr=1 / 255, optimizer="sign",
                        seed=0) -> Iterator[Step]:
    """The steps of ``fooling_image``: ascent on the target's score, stopping at the first step where the
    model predicts the target (that Step has ``done=True``). The default update moves every pixel by one
    grey level (1/255) along the sign of its gradient, so after k steps no pixel has changed by more than k."""
    vm = as_model(model)
    index = vm.class_index(target)
    pixels = as_pixels(vm, image)[:1]
    return Ascent(vm, class_score(vm, index), init=pixels, lr=lr, optimizer=optimizer, steps=steps, seed=seed,
                  stop_when=lambda ctx: bool((ctx.logits.argmax(1) == index).all())).steps()


def fooling_image(model, image, target, **options) -> FoolingResult:
    """Start from an image, pick a class, change the image a little until the model says that class.

        fool = cw.fooling_image(model, image, "circle")
        fool.fooled, fool.steps, fool.linf              # fool.difference_image(10): the slide's 10x difference
    Stops at the first step where the prediction is the target (or after ``steps``).
    """
    vm = as_model(model)
    index = vm.class_index(target)
    original = as_pixels(vm, image)[:1].cpu()
    last = None
    for last in fooling_image_steps(vm, original, index, **options):
        pass
    return fooling_result(vm, original, last.pixels, index, last.index)


def fooling_result(model, original: torch.Tensor, fooled: torch.Tensor, target: int, steps: int) -> FoolingResult:
    """The four panels and both predictions, judged on the uint8 images (what a viewer would save)."""
    vm = as_model(model)
    before, after = to_uint8_image(original[0]), to_uint8_image(fooled[0])
    p0, p1 = _probabilities(vm, before), _probabilities(vm, after)
    top0, top1 = int(p0.argmax()), int(p1.argmax())
    return FoolingResult(
        original=before, image=after, difference=after.astype(np.float32) - before.astype(np.float32),
        steps=steps, target=target, fooled=top1 == target,
        original_prediction=(top0, vm.class_names[top0], float(p0[top0])),
        fooled_prediction=(top1, vm.class_names[top1], float(p1[top1])),
        target_probability=(float(p0[target]), float(p1[target])),
    )


@torch.no_grad()
def _probabilities(vm, image: np.ndarray) -> np.ndarray:
    pixels = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0).to(vm.device)
    return vm.module(vm.normalize(pixels))[0].softmax(-1).cpu().numpy()


# --- DeepDream ---------------------------------------------------------------------------------

def deep_dream_steps(model, image, layer, *, octaves=3, octave_scale=1.4, steps=10, lr=0.02,
                     optimizer="normalized", jitter=2, size=None, seed=0) -> Iterator[Step]:
    """The steps of ``deep_dream``, octave by octave (smallest first); indices run on across octaves and only
    the very last step has ``done=True``. Between octaves the detail the dream added is upsampled and laid
    over the larger original, so the picture stays sharp."""
    vm = as_model(model)
    if octaves < 1 or octave_scale < 1:
        raise ValueError(f"octaves must be >= 1 and octave_scale >= 1, got {octaves}, {octave_scale}")
    base = as_pixels(vm, image)[:1].cpu()
    base = base if size is None else resize_pixels(base, size)
    sizes = _octave_sizes(base.shape[-2:], octaves, octave_scale)
    detail, offset = torch.zeros(1, 3, *sizes[0]), 0
    transforms = [opt.jitter(jitter)] if jitter else []
    for k, hw in enumerate(sizes):
        octave_base = resize_pixels(base, hw)
        init = (octave_base + F.interpolate(detail, size=hw, mode="bilinear", align_corners=False)).clamp(0, 1)
        ascent = Ascent(vm, deepdream(layer), init=init, lr=lr, optimizer=optimizer, steps=steps,
                        transforms=transforms, seed=seed + k)
        for step in ascent.steps():
            last_octave = k == len(sizes) - 1
            step.index, step.done = offset + step.index, step.done and last_octave
            yield step
        detail, offset = step.pixels - octave_base, offset + steps


def deep_dream(model, image, layer, octaves=3, **options) -> Generated:
    """DeepDream: amplify whatever ``layer`` already sees (I* = argmax sum f_i(I)^2 / 2, the layer's gradient
    set equal to its activation), over ``octaves`` image scales.

        dream = cw.deep_dream(model, image, "features.conv3", octaves=3, steps=10)
    """
    return _finish(deep_dream_steps(model, image, layer, octaves=octaves, **options))


def _octave_sizes(hw, octaves: int, scale: float) -> list[tuple[int, int]]:
    h, w = int(hw[0]), int(hw[1])
    sizes = [(round(h / scale ** k), round(w / scale ** k)) for k in reversed(range(octaves))]
    if min(sizes[0]) < 8:
        raise ValueError(f"{octaves} octaves at scale {scale} shrink a {h}x{w} image to {sizes[0]}; "
                         "use fewer octaves, a smaller octave_scale or a larger image")
    return sizes
