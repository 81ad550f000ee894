"""EmbeddingScatter: last-layer features in 2-D (PCA / t-SNE / UMAP), every point able to show its image.

The plot is a small anywidget (``static/scatter.js``, a 2-D canvas): points and labels travel once as
binary buffers, thumbnails once as one atlas image; pan, zoom, hover and selection run in the browser.
The selection comes back as the ``selected`` trait, so other views can follow it.
"""
from __future__ import annotations

import math
from pathlib import Path

import anywidget
import ipywidgets as w
import numpy as np
import traitlets as t
from PIL import Image, ImageDraw

from ..core.datasets import ImageDataset, image_dataset
from ..core.embedding import METHODS, check_features, embed_steps
from ..core.features import feature_steps
from ..core.models import VisionModel, as_model
from ..core.render import encode
from ._base import View
from ._job import Job

STATIC = Path(__file__).parent / "static"
METHOD_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
SELECT_MODES = ("box", "lasso")  # what shift-drag draws
ATLAS_SIDE = 4096          # px: browsers draw from images this large without trouble
MAX_THUMBNAILS = 20_000    # above this the atlas thumbnails would be too small to read
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


class ScatterCanvas(anywidget.AnyWidget):
    """The browser half: a canvas scatter of ``points`` coloured by ``labels``, with atlas thumbnails."""

    _esm = STATIC / "scatter.js"
    _css = STATIC / "scatter.css"
    points = t.Bytes(b"", help="float32 (N, 2) x, y pairs").tag(sync=True)
    labels = t.Bytes(b"", help="int32 (N,) colour index per point").tag(sync=True)
    class_names = t.List(t.Unicode(), help="legend text per colour index").tag(sync=True)
    colors = t.List(t.Unicode(), help="CSS colour per colour index").tag(sync=True)
    atlas = t.Bytes(b"", help="every thumbnail in one PNG/JPEG grid, sent once").tag(sync=True)
    thumb_size = t.Int(32, help="px per thumbnail in the atlas").tag(sync=True)
    atlas_columns = t.Int(1, help="thumbnails per atlas row").tag(sync=True)
    show_thumbnails = t.Bool(True, help="draw thumbnails at the points (else dots; hover still shows them)").tag(sync=True)
    selected = t.List(t.Int(), help="indices of the selected points (click, or shift-drag a box or lasso)").tag(sync=True)
    select_mode = t.Enum(list(SELECT_MODES), "box", help="what shift-drag draws: a box, or a free-hand lasso "
                         "(points inside it by the even-odd rule)").tag(sync=True)
    view = t.List(t.Float(), help="visible data rectangle [x0, x1, y0, y1], set by the browser").tag(sync=True)
    width = t.Int(640, help="canvas width in px").tag(sync=True)
    height = t.Int(480, help="canvas height in px").tag(sync=True)


class EmbeddingScatter(View):
    """Features reduced to 2-D, with thumbnails, pan/zoom, a method switch and selection as a trait.

    Drag pans, the wheel zooms, a double-click fits; a click selects one point and shift-drag selects many,
    with a box or a free-hand lasso as ``select_mode`` (or the "select" toggle) says. Plain drag stays pan
    in both modes, so switching never costs navigation, and it keeps the current selection.

        scatter = cw.EmbeddingScatter(model, cw.image_dataset("shapes", n=2000))   # features computed here
        scatter = cw.EmbeddingScatter(feats, labels=y, images=imgs, method="tsne", select_mode="lasso")
        scatter.observe(lambda c: print(c.new), names="selected")
    """

    css_class = "cw-embedding-scatter"
    method = t.Enum(list(METHODS), "pca", help="pca, tsne or umap").tag(sync=True)
    color_by = t.Enum(["label", "predicted"], "label", help="colour by true label or predicted class").tag(sync=True)
    selected = t.List(t.Int(), help="indices of the selected points").tag(sync=True)
    select_mode = t.Enum(list(SELECT_MODES), "box", help="what shift-drag draws: box or lasso").tag(sync=True)

    def __init__(self, source, dataset=None, *, labels=None, images=None, class_names=None, method: str = "pca",
                 seed: int = 0, layer: str | None = None, thumbnails: bool = True, width: int = 640,
                 height: int = 480, **kwargs):
        self.model, self.dataset, self.features = _inputs(source, dataset, images)
        self.layer, self.seed = layer, seed
        self.n = len(self.dataset) if self.features is None else len(self.features)
        self.labels, self.class_names = _labels(labels, class_names, self.dataset, self.n)
        self.layouts: dict[str, np.ndarray] = {}
        self._shown = None                  # the layout object last sent to the browser
        self.predicted = None
        self.job: Job | None = None
        self.canvas = ScatterCanvas(width=width, height=height)
        self.canvas.add_class("cw-scatter")
        self._controls()
        super().__init__([self.title, w.HBox([self.method_picker, self.color_picker, self.thumbs_toggle]),
                          self.canvas, w.HBox([self.mode_picker, self.progress, self.stop_button])], **kwargs)
        w.link((self.canvas, "selected"), (self, "selected"))
        w.link((self, "select_mode"), (self.canvas, "select_mode"))  # self first: select_mode= in kwargs wins
        w.link((self, "select_mode"), (self.mode_picker, "value"))
        self._send_labels()
        self._send_atlas(thumbnails)
        self.method_picker.observe(self.guard(lambda c: self.run(c.new)), names="value")
        self.color_picker.observe(self.guard(lambda c: self._recolor(c.new)), names="value")
        self.stop_button.on_click(self.guard(lambda _b: self.stop()))
        self.method_picker.value = method  # PCA of given features is instant; anything else runs in a Job

    # --- building ----------------------------------------------------------------------------
    def _controls(self) -> None:
        what = f"{self.model.label}" if self.model else f"{self.n} feature vectors"
        self.title = w.HTML(f"<b>Embedding</b> — {what}")
        self.method_picker = w.ToggleButtons(options=[(METHOD_LABELS[m], m) for m in METHODS], value=None,
                                             description="method")
        self.method_picker.add_class("cw-method")
        colour_options = [("label", "label")] + ([("predicted", "predicted")] if self.model else [])
        self.color_picker = w.ToggleButtons(options=colour_options, description="colour")
        self.color_picker.add_class("cw-color-by")
        self.thumbs_toggle = w.Checkbox(value=True, description="thumbnails at points", indent=False)
        self.thumbs_toggle.add_class("cw-show-thumbnails")
        self.mode_picker = w.ToggleButtons(options=list(SELECT_MODES), description="select",
                                           tooltips=["shift-drag a box", "shift-drag a free-hand lasso"],
                                           style={"button_width": "56px"})
        self.mode_picker.add_class("cw-select-mode")
        w.link((self.thumbs_toggle, "value"), (self.canvas, "show_thumbnails"))
        self.progress = w.FloatProgress(min=0, max=1, value=0, layout=w.Layout(width="300px"))
        self.progress.add_class("cw-progress")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("cw-stop")

    def _send_labels(self) -> None:
        with self.canvas.hold_sync():
            self.canvas.labels = self.labels.astype(np.int32).tobytes()
            self.canvas.class_names = list(self.class_names)
            self.canvas.colors = [PALETTE[i % len(PALETTE)] for i in range(max(1, len(self.class_names)))]

    def _send_atlas(self, wanted: bool) -> None:
        thumbs = self._thumbnails() if wanted else None
        if thumbs is None:
            self.canvas.show_thumbnails = False
            return
        png, columns = atlas_image(thumbs)
        with self.canvas.hold_sync():
            self.canvas.thumb_size, self.canvas.atlas_columns = thumbs.shape[1], columns
            self.canvas.atlas = png

    def _thumbnails(self) -> np.ndarray | None:
        if self.dataset is None or self.n > MAX_THUMBNAILS:
            return None
        return self.dataset.thumbnails(thumb_size(self.n))

    # --- running -----------------------------------------------------------------------------
    def run(self, method: str) -> None:
        """Show ``method``'s layout: cached, instant (PCA of given features) or computed in a Job."""
        if method is None:
            return
        self.method = method
        if method in self.layouts:
            return self._show(self.layouts[method], f"{METHOD_LABELS[method]} layout of {self.n} points")
        if self.features is not None and method == "pca":
            return self._finish(next(iter(embed_steps(self.features, "pca"))))
        self.stop()
        self.job = Job(self._steps(method), on_step=self.guard(self._on_step), on_done=self.guard(self._finish),
                       on_error=self.show_error)
        self.stop_button.disabled = False
        self.job.start()

    def stop(self) -> None:
        """Stop the running job within one step; what it computed so far stays."""
        if self.job is not None and self.job.running:
            self.job.stop()
            self.job.join(5)

    def _steps(self, method: str):
        if self.features is None:
            for step in feature_steps(self.model, self.dataset, layer=self.layer):
                self.partial_features = step.features
                yield step
            self.features = check_features(self.partial_features)
            self._predict()
        yield from embed_steps(self.features, method, seed=self.seed)

    def _on_step(self, step) -> None:
        if hasattr(step, "done"):  # a feature batch
            self.progress.value = step.done / step.total
            return self.set_status(f"features: {step.done}/{step.total} images")
        self.progress.value = step.progress
        self.set_status(step.note)
        if step.layout is not None:
            self._show(step.layout, step.note)

    def _finish(self, step) -> None:
        self.stop_button.disabled = True
        if step is None or not hasattr(step, "layout") or step.layout is None:
            return self.set_status("stopped before a layout was ready; the features computed so far are kept")
        stopped = self.job is not None and self.job.stopped
        if not stopped:
            self.layouts[step.method] = step.layout
        self.progress.value = 1.0 if not stopped else self.progress.value
        self._show(step.layout, f"{step.note} — {'stopped; partial layout kept' if stopped else 'done'}")

    def _show(self, layout: np.ndarray, note: str) -> None:
        if layout is not self._shown:  # waiting steps repeat the last layout: send it once
            self._shown, self._layout = layout, np.ascontiguousarray(layout, dtype=np.float32)
            self.canvas.points = self._layout.tobytes()
        self.set_status(f"{note} · click or shift-drag to select")

    # --- colours -----------------------------------------------------------------------------
    def _predict(self) -> None:
        vm = self.model
        if self.layer is None and vm.feature_input and vm.feature_layer:
            import torch

            head = vm.module.get_submodule(vm.feature_layer)
            with torch.inference_mode():
                logits = head(torch.from_numpy(self.features).to(vm.device))
            self.predicted = logits.argmax(1).cpu().numpy()

    def _recolor(self, by: str) -> None:
        if by == "predicted" and self.predicted is None:
            raise ValueError("predicted classes are known once the features are computed (penultimate layer only)")
        values = self.predicted if by == "predicted" else self.labels
        self.canvas.labels = np.asarray(values, dtype=np.int32).tobytes()
        if by == "predicted":
            self.canvas.class_names = list(self.model.class_names)
        else:
            self.canvas.class_names = list(self.class_names)
        self.color_by = by

    # --- picture -----------------------------------------------------------------------------
    def snapshot(self) -> np.ndarray | None:
        layout = getattr(self, "_layout", None)
        if layout is None:
            return None
        labels = np.frombuffer(self.canvas.labels, np.int32) if self.canvas.labels else np.zeros(len(layout), np.int32)
        return render_scatter(layout, labels, self.canvas.colors, (self.canvas.height, self.canvas.width),
                              view=self.canvas.view or None, selected=self.selected)


# --- helpers -----------------------------------------------------------------------------------

def _inputs(source, dataset, images):
    """(model or None, dataset or None, features or None) from the two ways of calling."""
    if isinstance(source, VisionModel) or _is_module(source):
        if dataset is None:
            raise ValueError("EmbeddingScatter(model, dataset): pass the images as the second argument "
                             "(cw.image_dataset(...)), or pass features instead of a model")
        return as_model(source), image_dataset(dataset), None
    features = check_features(source)
    data = images if images is not None else dataset
    data = image_dataset(data) if data is not None else None
    if data is not None and len(data) != len(features):
        raise ValueError(f"{len(features)} feature vectors but {len(data)} images; pass one image per feature row")
    return None, data, features


def _is_module(obj) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(obj, nn.Module)


def _labels(labels, class_names, dataset: ImageDataset | None, n: int):
    if labels is None:
        labels = dataset.labels if dataset is not None else np.zeros(n, np.int64)
        class_names = class_names or (dataset.class_names if dataset is not None else ["points"])
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{n} points but labels of shape {labels.shape}; pass one integer label per point")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    names = list(class_names) if class_names is not None else [str(i) for i in range(int(labels.max()) + 1)]
    return labels.astype(np.int64), names


def thumb_size(n: int) -> int:
    """Thumbnail px so that n of them fit one ATLAS_SIDE atlas (32 px up to 16,384 points)."""
    return int(max(8, min(32, ATLAS_SIDE // math.ceil(math.sqrt(max(n, 1))))))


def atlas_image(thumbs: np.ndarray) -> tuple[bytes, int]:
    """(N, s, s, 3) thumbnails -> (one image's bytes, columns); PNG when small, JPEG when large."""
    n, s = len(thumbs), thumbs.shape[1]
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * s, columns * s, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * s:(r + 1) * s, c * s:(c + 1) * s] = thumbs[i]
    return encode(grid, "png" if n <= 1024 else "jpeg", quality=85), columns


def render_scatter(xy: np.ndarray, labels: np.ndarray, colors, size, view=None, selected=()) -> np.ndarray:
    """The scatter as a uint8 (H, W, 3) picture (numpy + PIL), for the saved notebook's PNG."""
    h, wd = size
    x0, x1, y0, y1 = view if view and len(view) == 4 else _fit(xy, wd, h)
    px = ((xy[:, 0] - x0) / max(x1 - x0, 1e-12) * (wd - 1)).round().astype(int)
    py = ((y1 - xy[:, 1]) / max(y1 - y0, 1e-12) * (h - 1)).round().astype(int)
    rgb = np.array([_hex(colors[int(lab) % len(colors)]) if colors else (31, 119, 180) for lab in range(int(labels.max(initial=0)) + 1)], np.uint8)
    canvas = np.full((h, wd, 3), 255, np.uint8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            x, y = px + dx, py + dy
            ok = (x >= 0) & (x < wd) & (y >= 0) & (y < h)
            canvas[y[ok], x[ok]] = rgb[labels[ok]]
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for i in selected:
        if 0 <= i < len(xy):
            draw.ellipse([px[i] - 6, py[i] - 6, px[i] + 6, py[i] + 6], outline=(0, 0, 0), width=2)
    return np.asarray(image)


def _fit(xy: np.ndarray, wd: int, h: int, pad: int = 24):
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-9)
    scale = min((wd - 2 * pad) / span[0], (h - 2 * pad) / span[1])
    cx, cy = (lo + hi) / 2
    return cx - wd / 2 / scale, cx + wd / 2 / scale, cy - h / 2 / scale, cy + h / 2 / scale


def _hex(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))
