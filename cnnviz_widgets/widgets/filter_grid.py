"""FilterGrid: the first conv layer's filters as a grid of RGB tiles, as on the lecture's first slide."""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import traitlets as t

from ..core.filters import filter_tiles, first_layer_filters
from ..core.layers import conv_layer_names
from ..core.models import as_model
from ..core.render import encode, tile_grid
from ._base import View, image_widget

MAX_ROWS = 32   # deeper layers: at most 32 filters ...
MAX_COLS = 32   # ... by 32 input channels, each slice a grayscale tile


class FilterGrid(View):
    """The filters of a conv layer as a grid; pick a layer, a normalization, and one filter to enlarge.

        cw.FilterGrid(cw.load_model("shapes"))
    """

    css_class = "cw-filter-grid"
    layer = t.Unicode(help="dotted name of the conv layer shown").tag(sync=True)
    normalize = t.Enum(["per_filter", "global"], "per_filter", help="scale per tile or one scale for all").tag(sync=True)
    selected = t.Int(0, help="index of the filter shown enlarged").tag(sync=True)

    def __init__(self, model, layer: str | None = None, normalize: str = "per_filter", **kwargs):
        self.model = as_model(model)
        names = conv_layer_names(self.model)
        if not names:
            raise ValueError(f"{self.model.name} has no Conv2d layer; FilterGrid needs a convolutional network")
        self.title = w.HTML(f"<b>Filters</b> — {self.model.label}")
        self.layer_picker = w.Dropdown(options=names, description="layer")
        self.layer_picker.add_class("cw-layer")
        self.norm_picker = w.ToggleButtons(options=[("per filter", "per_filter"), ("global", "global")],
                                           description="scale")
        self.norm_picker.add_class("cw-normalize")
        self.filter_picker = w.IntSlider(min=0, max=0, description="filter")
        self.filter_picker.add_class("cw-filter-index")
        self.grid_image = image_widget("cw-grid-image")
        self.zoom_image = image_widget("cw-filter-zoom", width="160px")
        self.zoom_label = w.HTML()
        self._grid = None
        super().__init__([self.title, w.HBox([self.layer_picker, self.norm_picker]), self.grid_image,
                          w.HBox([self.filter_picker]), w.HBox([self.zoom_image, self.zoom_label])], **kwargs)
        w.link((self.layer_picker, "value"), (self, "layer"))
        w.link((self.norm_picker, "value"), (self, "normalize"))
        w.link((self.filter_picker, "value"), (self, "selected"))
        self.observe(self.guard(self._redraw), names=["layer", "normalize"])
        self.observe(self.guard(self._zoom), names=["selected"])
        with self.hold_trait_notifications():
            self.normalize = normalize
            self.layer = layer or self.model.filter_layer or names[0]
        self.guard(self._redraw)()

    @t.validate("layer")
    def _check_layer(self, proposal):
        names = conv_layer_names(self.model)
        if proposal["value"] not in names:
            raise t.TraitError(f"{proposal['value']!r} is not a conv layer of {self.model.name}; choose one of {names}")
        return proposal["value"]

    def _redraw(self, _change=None) -> None:
        weights = first_layer_filters(self.model, self.layer)
        out_c, in_c, kh, kw = weights.shape
        if in_c == 3:
            tiles, columns, note = filter_tiles(weights, self.normalize), None, f"{out_c} filters, {in_c}×{kh}×{kw} (RGB)"
        else:
            rows, cols = min(out_c, MAX_ROWS), min(in_c, MAX_COLS)
            tiles = filter_tiles(weights[:rows, :cols], self.normalize)
            columns = cols
            note = (f"{rows} of {out_c} filters (rows) × {cols} of {in_c} input channels (columns), "
                    f"{kh}×{kw}, grayscale per input channel")
        scale = max(1, 24 // kh)
        big = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
        self._grid = tile_grid(big, columns=columns, pad=max(1, scale // 2))
        self.grid_image.value = encode(self._grid)
        self.filter_picker.max = out_c - 1
        self._zoom()
        self.set_status(f"{self.layer}: {note} · {self.normalize.replace('_', ' ')} scale")

    def _zoom(self, _change=None) -> None:
        weights = first_layer_filters(self.model, self.layer)
        index = min(self.selected, weights.shape[0] - 1)
        tile = filter_tiles(weights[index:index + 1], self.normalize)
        if tile.ndim == 3 and tile.shape[0] > 1:  # grayscale slices of one filter: a row of them
            tile = tile_grid(tile[:MAX_COLS], columns=min(tile.shape[0], 8))
        else:
            tile = tile[0]
        zoom = max(1, 160 // tile.shape[1])
        self.zoom_image.value = encode(tile, scale=zoom)
        w_ = weights[index]
        self.zoom_label.value = (f"filter {index}: min {float(w_.min()):.3f}, max {float(w_.max()):.3f}, "
                                 f"L2 norm {float(w_.norm()):.3f}")

    def snapshot(self) -> np.ndarray | None:
        return self._grid
