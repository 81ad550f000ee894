"""SaliencyExplorer: saliency, SmoothGrad, guided backprop, Grad-CAM and guided Grad-CAM on one image.

Also home of ``class_options`` and ``refill_classes``, which the occlusion view shares (the image picker lives in _picker.py).
"""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import traitlets as t

from ..core import attribution
from ..core.layers import conv_layer_names
from ..core.models import as_model
from ..core.render import COLORMAPS, encode, overlay, tile_grid
from ._base import View, image_widget
from ._job import Job
from ._picker import ImagePicker

METHODS = {  # label -> (core function, extra keywords)
    "saliency": (attribution.saliency, {}),
    "SmoothGrad": (attribution.saliency, {"smooth": 16}),
    "guided backprop": (attribution.guided_backprop, {"raw": True}),
    "Grad-CAM": (attribution.grad_cam, {}),
    "guided Grad-CAM": (attribution.guided_grad_cam, {"raw": True}),
}
ALL = "all side by side"


def class_options(vm, image, k: int = 5) -> list[tuple[str, int]]:
    """Dropdown options: the top-k predictions with probabilities first, then every class."""
    top = vm.predict(image, k=k)
    first = [(f"{name} ({p:.1%})", i) for i, name, p in top]
    shown = {i for _, i in first}
    return first + [(f"{name}", i) for i, name in enumerate(vm.class_names) if i not in shown]


def refill_classes(view, image, keep: int | None = None) -> None:
    """Offer ``image``'s top-5 first in ``view.class_picker`` and select ``keep`` (the class the user chose),
    or the top class when None. Held notifications: the view's observers see one change of ``target``."""
    options = class_options(view.model, image)
    with view.hold_trait_notifications():
        view.class_picker.options = options
        view.class_picker.value = options[0][1] if keep is None else keep


def cam_layers(vm) -> list[str]:
    """Layers offered for Grad-CAM: the model's default first, then every conv layer."""
    names = conv_layer_names(vm)
    return ([vm.cam_layer] if vm.cam_layer and vm.cam_layer not in names else []) + names


def gradient_picture(grad: np.ndarray) -> np.ndarray:
    """A signed RGB gradient (3, H, W) as a picture: centred on gray, +-3 std to the full range."""
    g = grad - grad.mean()
    g = g / (3 * g.std() + 1e-12) * 0.5 + 0.5
    return (np.clip(g, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)


def _label(text: str) -> w.HTML:
    return w.HTML(f"<div style='text-align:center;font-size:12px'>{text}</div>")


class SaliencyExplorer(View):
    """Which pixels matter for a class: gradient maps and Grad-CAM, one at a time or side by side.

        cw.SaliencyExplorer(cw.load_model("shapes"))
    """

    css_class = "cw-saliency-explorer"
    method = t.Unicode("Grad-CAM", help="the method shown, or 'all side by side'").tag(sync=True)
    target = t.Int(0, help="class index explained").tag(sync=True)
    layer = t.Unicode(help="Grad-CAM layer (dotted name)").tag(sync=True)
    opacity = t.Float(0.5, help="heatmap opacity over the image").tag(sync=True)
    cmap = t.Unicode("jet", help="colormap of the heatmaps").tag(sync=True)

    def __init__(self, model, image=None, **kwargs):
        self.model = as_model(model)
        self._maps: dict = {}
        self._picture = None
        self._job = None
        self.picker = ImagePicker(image, on_error=self.show_error)
        self.class_picker = w.Dropdown(description="class", layout=w.Layout(width="320px"))
        self.class_picker.add_class("cw-class")
        self.method_picker = w.ToggleButtons(options=[*METHODS, ALL], value="Grad-CAM")
        self.method_picker.add_class("cw-method")
        self.layer_picker = w.Dropdown(options=cam_layers(self.model), description="layer")
        self.layer_picker.add_class("cw-layer")
        self.opacity_slider = w.FloatSlider(0.5, min=0, max=1, step=0.05, description="opacity")
        self.opacity_slider.add_class("cw-opacity")
        self.cmap_picker = w.Dropdown(options=list(COLORMAPS), value="jet", description="colormap")
        self.cmap_picker.add_class("cw-cmap")
        self._slots = {m: self._slot(m) for m in METHODS}
        self.pictures = w.HBox([box for box, _ in self._slots.values()])
        self.pictures.add_class("cw-maps")
        title = w.HTML(f"<b>Which pixels matter</b> — {self.model.label}")
        super().__init__([title, self.picker, w.HBox([self.class_picker, self.layer_picker]), self.method_picker,
                          w.HBox([self.opacity_slider, self.cmap_picker]), self.pictures], **kwargs)
        self.picker.default_for(self.model)
        self._set_image(keep=None)
        for control, name in ((self.method_picker, "method"), (self.class_picker, "target"),
                              (self.layer_picker, "layer"), (self.opacity_slider, "opacity"),
                              (self.cmap_picker, "cmap")):
            w.link((control, "value"), (self, name))
        self.layer = self.model.cam_layer or self.layer_picker.options[-1]
        self.picker.observe(self.guard(self._new_image), names="value")
        self.observe(self.guard(self._compute), names=["method", "target", "layer"])
        self.observe(self.guard(self._draw), names=["opacity", "cmap"])
        self.guard(self._compute)()

    @staticmethod
    def _slot(method: str):
        img = image_widget("cw-map-image", width="256px")
        img.add_class("cw-map-" + method.lower().replace(" ", "-"))
        box = w.VBox([img, _label(method)], layout=w.Layout(display="none"))
        return box, img

    # --- actions -----------------------------------------------------------------------------
    def _new_image(self, _change=None) -> None:
        """A new image: the class, method and layer stay; the maps are computed again."""
        self._stop()
        self._set_image(keep=self.target)
        self._compute()

    def _set_image(self, keep: int | None) -> None:
        self._maps.clear()
        self.view_image = self.model.view(self.picker.value)
        refill_classes(self, self.picker.value, keep)

    def _wanted(self) -> list[str]:
        return list(METHODS) if self.method == ALL else [self.method]

    def _compute(self, _change=None) -> None:
        self._stop()
        target, layer = self.target, self.layer
        todo = [m for m in self._wanted() if self._key(m, target, layer) not in self._maps]
        name = self.model.class_names[target]
        self.set_status(f"computing {', '.join(todo)} for {name}…" if todo else "")
        self._job = Job(self._steps(todo, self.picker.value, target, layer), on_step=lambda _: self._draw(),
                        on_done=lambda _: self._done(), on_error=self.show_error, interval=0.0).start()

    def _stop(self) -> None:
        """One job at a time on the model: two would interleave their frozen() blocks."""
        if self._job is not None:
            self._job.stop()
            self._job.join()

    @staticmethod
    def _key(method: str, target: int, layer: str):
        return (method, target, layer if "Grad-CAM" in method else None)

    def _steps(self, todo, image, target, layer):
        for method in todo:
            fn, options = METHODS[method]
            if "Grad-CAM" in method:
                options = {**options, "layer": layer}
            self._maps[self._key(method, target, layer)] = fn(self.model, image, target=target, **options)
            yield method

    def _done(self) -> None:
        self._draw()
        where = f" · layer {self.layer}" if "Grad-CAM" in self.method or self.method == ALL else ""
        self.set_status(f"{self.model.class_names[self.target]} · {self.method}{where}")

    # --- drawing -----------------------------------------------------------------------------
    def _draw(self, _change=None) -> None:
        shown = [(m, self._maps.get(self._key(m, self.target, self.layer))) for m in self._wanted()]
        pictures = {m: self._render(result) for m, result in shown if result is not None}
        if not pictures:
            return
        width = "256px" if len(pictures) == 1 else "160px"
        for method, (box, img) in self._slots.items():
            box.layout.display = None if method in pictures else "none"
            if method in pictures:
                img.layout.width = width
                img.value = encode(pictures[method])
        self._picture = tile_grid(np.stack(list(pictures.values())), columns=len(pictures), pad=2)

    def _render(self, result: np.ndarray) -> np.ndarray:
        if result.ndim == 3:  # signed RGB gradient (guided methods): shown as a picture, as on the slides
            return gradient_picture(result)
        return overlay(self.view_image, result, alpha=self.opacity, cmap=self.cmap)

    def snapshot(self):
        return self._picture
