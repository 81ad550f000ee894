"""SanityCheck: the map at each stage of cascading weight randomization (Adebayo et al. 2018)."""
from __future__ import annotations

import html

import ipywidgets as w
import numpy as np
import traitlets as t

from ..core.models import as_model
from ..core.render import encode, heatmap, tile_grid
from ..core.sanity import METHODS, cascade_layers, sanity_steps
from ._base import View, image_widget
from ._job import Job
from ._picker import ImagePicker

TILE = 96  # pixels per stage tile


class SanityCheck(View):
    """Randomize the weights layer by layer from the top and watch the map: a faithful map falls apart
    (its Spearman correlation with the original drops), an edge detector stays.

        cw.SanityCheck(cw.load_model("shapes"), method="saliency")
    """

    css_class = "cw-sanity-check"
    method = t.Unicode("grad_cam", help="attribution method checked").tag(sync=True)

    def __init__(self, model, image=None, method: str = "grad_cam", **kwargs):
        self.model = as_model(model)
        self._job = None
        self._stages: list = []
        self._picture = None
        self.picker = ImagePicker(image, on_error=self.show_error)
        self.method_picker = w.Dropdown(options=list(METHODS), value=method, description="method")
        self.method_picker.add_class("cw-method")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.run_button.add_class("cw-run")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("cw-stop")
        self.progress = w.FloatProgress(0.0, min=0.0, max=1.0, description="stages")
        self.progress.add_class("cw-progress")
        self.grid_image = image_widget("cw-sanity-grid")
        self.table = w.HTML()
        self.table.add_class("cw-sanity-table")
        title = w.HTML(f"<b>Sanity check: cascading randomization</b> — {self.model.label}")
        super().__init__([title, self.picker, self.method_picker,
                          w.HBox([self.run_button, self.stop_button, self.progress]), self.grid_image, self.table],
                         **kwargs)
        self.picker.default_for(self.model)
        w.link((self.method_picker, "value"), (self, "method"))
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.stop_button.on_click(self.guard(lambda _b: self.stop()))
        self.set_status("press Run: each stage randomizes one more layer, from the top down")

    def run(self) -> Job:
        """Start the cascade (also the Run button); returns the Job."""
        self.stop()
        self._stages = []
        self.progress.value = 0.0
        self.run_button.disabled, self.stop_button.disabled = True, False
        self._total = 1 + len(cascade_layers(self.model.module))
        steps = sanity_steps(self.method, self.model, self.picker.value)
        self._job = Job(steps, on_step=self._on_step, on_done=self._on_done, on_error=self._on_error,
                        interval=0.0).start()
        return self._job

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()
            self._job.join()

    def _on_step(self, stage) -> None:
        self._stages.append(stage)
        self.progress.value = len(self._stages) / self._total
        self._draw()
        self.set_status(f"stage {stage.index}: randomized down to {stage.layer} · Spearman {stage.spearman:.2f}")

    def _on_done(self, _last) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        if self._stages:
            last = self._stages[-1]
            self.set_status(f"{self.method}: {len(self._stages) - 1} layers randomized · final Spearman "
                            f"{last.spearman:.2f} (below 0.5: the map depends on the weights)")

    def _on_error(self, err) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.show_error(err)

    def _draw(self) -> None:
        tiles = np.stack([_tile(s.map) for s in self._stages])
        self._picture = tile_grid(tiles, columns=min(len(tiles), 8), pad=2)
        self.grid_image.value = encode(self._picture)
        rows = "".join(f"<tr><td>{s.index}</td><td><code>{html.escape(s.layer)}</code></td>"
                       f"<td>{s.spearman:.3f}</td></tr>" for s in self._stages)
        self.table.value = f"<table><tr><th>stage</th><th>randomized down to</th><th>Spearman</th></tr>{rows}</table>"

    def snapshot(self):
        return self._picture


def _tile(values: np.ndarray) -> np.ndarray:
    """|map| as a heatmap tile of TILE pixels (each stage normalized on its own, as in the paper)."""
    values = np.abs(values)
    picture = heatmap(values, "gray")
    scale = max(1, TILE // picture.shape[0])
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)
