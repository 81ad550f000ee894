"""OcclusionExplorer: slide a patch over the image and watch the class probability (Zeiler & Fergus)."""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import torch
import traitlets as t

from ..core.occlusion import FILLS, default_patch, fill_nan_nearest, occluded_input, occlusion_steps
from ..core.hooks import frozen
from ..core.models import as_model
from ..core.render import encode, overlay, resize_map, tile_grid
from ._base import View, image_widget
from ._job import Job
from ._picker import ImagePicker
from .saliency import refill_classes

DISPLAY = 224  # pixels per side of the pictures


class OcclusionExplorer(View):
    """Occlusion map with Run/Stop; the map fills in as it is computed; a position slider shows the
    occluded image and the class probability with the patch there (the elephant slide).

        cw.OcclusionExplorer(cw.load_model("shapes"))
    """

    css_class = "cw-occlusion-explorer"
    target = t.Int(0, help="class index whose probability is mapped").tag(sync=True)
    patch = t.Int(help="patch size in input pixels").tag(sync=True)
    stride = t.Int(help="step between patch positions in input pixels").tag(sync=True)
    fill = t.Unicode("zeros", help="what the patch holds: zeros (mean colour), mean, blur").tag(sync=True)
    position = t.Int(0, help="index of the patch position shown (row-major over the grid)").tag(sync=True)

    def __init__(self, model, image=None, **kwargs):
        self.model = as_model(model)
        self._job = None
        self._step = None
        self._picture = None
        side = min(self.model.input_size)
        patch, stride = default_patch(self.model.input_size)
        self.picker = ImagePicker(image, on_error=self.show_error)
        self.class_picker = _control(w.Dropdown(description="class", layout=w.Layout(width="320px")), "cw-class")
        self.patch_slider = _control(w.IntSlider(patch, min=1, max=side // 2, description="patch"), "cw-patch")
        self.stride_slider = _control(w.IntSlider(stride, min=1, max=side // 4, description="stride"), "cw-stride")
        self.fill_picker = _control(w.ToggleButtons(options=list(FILLS), description="fill"), "cw-fill")
        self.run_button = _control(w.Button(description="Run", button_style="primary", icon="play"), "cw-run")
        self.stop_button = _control(w.Button(description="Stop", icon="stop", disabled=True), "cw-stop")
        self.progress = _control(w.FloatProgress(0.0, min=0.0, max=1.0, description="progress"), "cw-progress")
        self.map_image = image_widget("cw-occlusion-map", width=f"{DISPLAY}px")
        self.position_slider = _control(w.IntSlider(0, min=0, max=0, description="position"), "cw-position")
        self.occluded_image = image_widget("cw-occluded-image", width=f"{DISPLAY}px")
        self.position_label = w.HTML().add_class("cw-position-label")
        title = w.HTML(f"<b>Occlusion</b> — {self.model.label}")
        super().__init__([
            title, self.picker, self.class_picker,
            w.HBox([self.patch_slider, self.stride_slider]), self.fill_picker,
            w.HBox([self.run_button, self.stop_button, self.progress]),
            w.HBox([w.VBox([self.map_image, w.HTML("probability of the class, patch centred here")]),
                    w.VBox([self.occluded_image, self.position_label])]),
            self.position_slider], **kwargs)
        self._set_image(keep=None)
        for control, name in ((self.class_picker, "target"), (self.patch_slider, "patch"),
                              (self.stride_slider, "stride"), (self.fill_picker, "fill"),
                              (self.position_slider, "position")):
            w.link((control, "value"), (self, name))
        self.picker.observe(self.guard(self._new_image), names="value")
        self.observe(self.guard(self._settings_changed), names=["target", "patch", "stride", "fill"])
        self.observe(self.guard(self._show_position), names=["position"])
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.stop_button.on_click(self.guard(lambda _b: self.stop()))
        self._settings_changed()

    # --- actions -----------------------------------------------------------------------------
    def run(self) -> Job:
        """Start computing the map (also the Run button); returns the Job (``job.join()`` waits)."""
        self.stop()
        self._step = None
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.progress.value = 0.0
        self.set_status("computing the occlusion map…")
        steps = occlusion_steps(self.model, self.picker.value, self.target, self.patch, self.stride, self.fill,
                                batch_size=32)
        self._job = Job(steps, on_step=self._on_step, on_done=self._on_done, on_error=self._on_error).start()
        return self._job

    def stop(self) -> None:
        """Stop the running computation within one batch; the partial map stays."""
        if self._job is not None:
            self._job.stop()
            self._job.join()

    def _on_step(self, step) -> None:
        self._step = step
        self.progress.value = step.fraction
        self._draw_map()
        self._show_position()

    def _on_done(self, _last) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        s = self._step
        if s is None:
            return
        verb = "stopped at" if s.done < s.total else "done:"
        low = np.nanmin(s.map[0])
        self.set_status(f"{verb} {s.done}/{s.total} positions · p({self._name()}) without patch "
                        f"{s.base[0]:.3f}, lowest with patch {low:.3f}")

    def _on_error(self, err) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.show_error(err)

    def _new_image(self, _change=None) -> None:
        """A new image: class, patch, stride and fill stay; the old map is dropped (Run computes a new one)."""
        self.stop()
        self._set_image(keep=self.target)
        self._settings_changed()

    def _set_image(self, keep: int | None) -> None:
        self.view_image = self.model.view(self.picker.value)
        refill_classes(self, self.picker.value, keep)

    def _settings_changed(self, _change=None) -> None:
        """New settings: the old map no longer applies; show the positions of the new grid."""
        self.stop()
        self._step = None
        self.progress.value = 0.0
        n = len(self._positions()[0]) * len(self._positions()[1])
        self.position_slider.max = n - 1
        self.map_image.value = encode(self.view_image)
        self._picture = self.view_image
        self._show_position()
        self.set_status(f"{n} patch positions · press Run")

    # --- drawing -----------------------------------------------------------------------------
    def _positions(self):
        from ..core.occlusion import patch_positions

        h, w_ = self.model.input_size
        return patch_positions(h, self.patch, self.stride), patch_positions(w_, self.patch, self.stride)

    def _draw_map(self) -> None:
        grid = fill_nan_nearest(self._step.map[0])
        values = resize_map(1.0 - grid, self.view_image.shape[:2])  # bright = the patch hid what mattered
        picture = overlay(self.view_image, values, alpha=0.6, cmap="jet")
        self.map_image.value = encode(_enlarge(picture))
        self._picture = tile_grid(np.stack([picture, self._occluded_picture()[0]]), columns=2, pad=2)

    def _occluded_picture(self):
        ys, xs = self._positions()
        iy, ix = divmod(min(self.position, len(ys) * len(xs) - 1), len(xs))
        x = occluded_input(self.model, self.picker.value, ys[iy], xs[ix], self.patch, self.fill)
        return self.model.deprocess(x)[0], (iy, ix, x)

    def _show_position(self, _change=None) -> None:
        picture, (iy, ix, x) = self._occluded_picture()
        self.occluded_image.value = encode(_enlarge(picture))
        known = self._step.map[0, iy, ix] if self._step is not None else np.nan
        if np.isnan(known) and not (self._job is not None and self._job.running):
            known = self._probability(x)  # one forward pass; never while a job uses the model
        ys, xs = self._positions()
        value = "not computed yet" if np.isnan(known) else f"{known:.3f}"
        self.position_label.value = f"patch at (y={ys[iy]}, x={xs[ix]}): <b>p({self._name()}) = {value}</b>"

    def _probability(self, x) -> float:
        with frozen(self.model), torch.no_grad():
            return float(self.model.module(x).softmax(-1)[0, self.target])

    def _name(self) -> str:
        return self.model.class_names[self.target]

    def snapshot(self):
        return self._picture


def _control(widget, css: str):
    widget.add_class(css)
    return widget


def _enlarge(picture: np.ndarray) -> np.ndarray:
    scale = max(1, DISPLAY // picture.shape[0])
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)
