"""NeighborsExplorer: a query image, its nearest neighbours in feature space, and in pixel space.

The lecture's last-layer slide, live: neighbours under the L2 distance between feature vectors share
what the network learned (the shape); neighbours under the L2 distance between raw pixels share
colour and background. Each tile has a green border when its label matches the query's, red otherwise.
"""
from __future__ import annotations

import numpy as np
import ipywidgets as w
import torch
import traitlets as t

from ..core.datasets import image_dataset, thumbnail
from ..core.features import extract_features, feature_steps
from ..core.layers import conv_layer_names
from ..core.models import as_model
from ..core.neighbors import knn, pixel_vectors
from ..core.images import to_array
from ..core.render import encode, tile_grid
from ._base import View, image_widget
from ._job import Job

TILE = 64         # px per neighbour tile
BORDER = 3        # px of the match / mismatch frame
MATCH, MISMATCH = (40, 160, 60), (200, 40, 40)
PENULTIMATE = "penultimate (default)"


class NeighborsExplorer(View):
    """Pick a query (index, random, upload, or a point selected in an EmbeddingScatter) and compare its
    k nearest neighbours in feature space with those in pixel space.

        explorer = cw.NeighborsExplorer(cw.load_model("shapes"), cw.image_dataset("shapes", n=1000))
        explorer.follow(scatter)        # clicking a point in the scatter makes it the query
    """

    css_class = "cw-neighbors"
    query = t.Int(0, help="index of the query image in the data set (-1: the uploaded image)").tag(sync=True)
    k = t.Int(8, help="neighbours per row").tag(sync=True)
    layer = t.Unicode(PENULTIMATE, help="feature layer; 4-D outputs are global-average-pooled").tag(sync=True)

    def __init__(self, model, dataset, k: int = 8, layer: str | None = None, batch_size: int = 64, **kwargs):
        self.model = as_model(model)
        self.dataset = image_dataset(dataset)
        self.batch_size = batch_size
        self.features: np.ndarray | None = None
        self.pixels: torch.Tensor | None = None
        self.job: Job | None = None
        self._upload: np.ndarray | None = None
        self._picture = None
        self._controls(len(self.dataset))
        super().__init__([self.title, w.HBox([self.query_picker, self.random_button, self.upload, self.k_picker]),
                          w.HBox([self.layer_picker, self.progress, self.stop_button]),
                          w.HBox([self.query_image, self.query_label]),
                          self.feature_caption, self.feature_row, self.feature_text,
                          self.pixel_caption, self.pixel_row, self.pixel_text], **kwargs)
        w.link((self.query_picker, "value"), (self, "query"))
        w.link((self.k_picker, "value"), (self, "k"))
        w.link((self.layer_picker, "value"), (self, "layer"))
        self.k = k
        self.layer = layer or PENULTIMATE
        self.observe(self.guard(self._update), names=["query", "k"])
        self.observe(self.guard(lambda _c: self.compute()), names=["layer"])
        self.random_button.on_click(self.guard(self._random))
        self.upload.observe(self.guard(self._uploaded), names="value")
        self.stop_button.on_click(self.guard(lambda _b: self.stop()))
        self.compute()

    # --- building ----------------------------------------------------------------------------
    def _controls(self, n: int) -> None:
        self.title = w.HTML(f"<b>Nearest neighbours</b> — {self.model.label} · {n} images")
        self.query_picker = w.BoundedIntText(min=0, max=n - 1, description="query", layout=w.Layout(width="160px"))
        self.query_picker.add_class("cw-query")
        self.random_button = w.Button(description="random", icon="random")
        self.random_button.add_class("cw-random")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.upload.add_class("cw-upload")
        self.k_picker = w.IntSlider(min=1, max=min(32, n - 1), description="k")
        self.k_picker.add_class("cw-k")
        layers = [PENULTIMATE, *conv_layer_names(self.model)]
        self.layer_picker = w.Dropdown(options=layers, description="layer")
        self.layer_picker.add_class("cw-layer")
        self.progress = w.FloatProgress(min=0, max=1, layout=w.Layout(width="200px"))
        self.progress.add_class("cw-progress")
        self.stop_button = w.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("cw-stop")
        self.query_image = image_widget("cw-query-image", width=f"{2 * TILE}px")
        self.query_label = w.HTML()
        self.feature_caption = w.HTML("<b>nearest in feature space</b>")
        self.feature_row = image_widget("cw-feature-neighbors")
        self.feature_text = w.HTML()
        self.pixel_caption = w.HTML("<b>nearest in pixel space</b>")
        self.pixel_row = image_widget("cw-pixel-neighbors")
        self.pixel_text = w.HTML()

    # --- gallery -----------------------------------------------------------------------------
    def compute(self) -> None:
        """(Re)compute the gallery's feature vectors in a Job; pixel vectors once."""
        self.stop()
        self.features = None
        self.job = Job(self._gallery_steps(), on_step=self.guard(self._on_step), on_done=self.guard(self._ready),
                       on_error=self.show_error)
        self.stop_button.disabled = False
        self.job.start()

    def _gallery_steps(self):
        if self.pixels is None:
            self.pixels = pixel_vectors(self.dataset, self.model, self.batch_size)
        for step in feature_steps(self.model, self.dataset, layer=self._layer(), batch_size=self.batch_size):
            self.partial = step.features
            yield step

    def _layer(self):
        return None if self.layer == PENULTIMATE else self.layer

    def _on_step(self, step) -> None:
        self.progress.value = step.done / step.total
        self.set_status(f"features of the gallery: {step.done}/{step.total} images")

    def _ready(self, step) -> None:
        self.stop_button.disabled = True
        if self.job is not None and self.job.stopped:
            done = 0 if step is None else step.done
            return self.set_status(f"stopped after {done} of {len(self.dataset)} images; press a layer again to resume")
        self.features = step.features
        self._update()

    def stop(self) -> None:
        if self.job is not None and self.job.running:
            self.job.stop()
            self.job.join(5)

    def follow(self, scatter) -> None:
        """Make the first point selected in an EmbeddingScatter (over the same data set) the query."""
        def on_select(change):
            if change.new:
                self.query = int(change.new[0])
        scatter.observe(self.guard(on_select), names="selected")

    # --- query -------------------------------------------------------------------------------
    def _random(self, _button=None) -> None:
        self.query = int(np.random.default_rng().integers(len(self.dataset)))

    def _uploaded(self, change) -> None:
        files = change.new
        if not files:
            return
        item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        self._upload = self.model.view(bytes(item["content"]))
        if self.query == -1:
            self._update()
        self.query_picker.min = -1
        self.query = -1

    def _query_vectors(self):
        """(feature vector, pixel vector, image, label or None) of the current query."""
        if self.query == -1:
            if self._upload is None:
                raise ValueError("no uploaded image yet; use the upload button or pick an index >= 0")
            feat = extract_features(self.model, [self._upload], layer=self._layer())
            return torch.from_numpy(feat), pixel_vectors([self._upload], self.model), self._upload, None
        i = self.query
        return (torch.from_numpy(self.features[i:i + 1]), self.pixels[i:i + 1], self.dataset.image(i),
                int(self.dataset.labels[i]))

    def neighbors(self):
        """(feature-space Neighbors, pixel-space Neighbors) of the current query, the query itself excluded."""
        feat, pix, _image, _label = self._query_vectors()
        k = min(self.k, len(self.dataset) - 1)
        return self._without_query(knn(feat, torch.from_numpy(self.features), k + 1), k), \
            self._without_query(knn(pix, self.pixels, k + 1), k)

    def _without_query(self, found, k: int):
        keep = found.indices[0] != self.query
        order = np.flatnonzero(keep)[:k]
        return found._replace(indices=found.indices[:, order], distances=found.distances[:, order])

    def _update(self, _change=None) -> None:
        if self.features is None:
            return
        feature_nn, pixel_nn = self.neighbors()
        _f, _p, image, label = self._query_vectors()
        self.query_image.value = encode(thumbnail(to_array(image), TILE), scale=2)
        name = "uploaded image" if label is None else f"#{self.query} · {self.dataset.class_names[label]}"
        self.query_label.value = f"<b>query</b><br>{name}"
        rows = [self._row(found, label) for found in (feature_nn, pixel_nn)]
        self.feature_row.value, self.pixel_row.value = (encode(r) for r in rows)
        self.feature_text.value, self.pixel_text.value = (self._caption(f) for f in (feature_nn, pixel_nn))
        self._picture = tile_grid(np.stack(_pad_rows(rows)), columns=1, pad=4)
        self.set_status(self._agreement(feature_nn, pixel_nn, label))

    def _row(self, found, label) -> np.ndarray:
        tiles = [_framed(thumbnail(self.dataset.image(int(i)), TILE), label, int(self.dataset.labels[i]))
                 for i in found.indices[0]]
        return tile_grid(np.stack(tiles), columns=len(tiles), pad=2)

    def _caption(self, found) -> str:
        cells = [f"#{int(i)} {self.dataset.label_name(int(i))} · {d:.2f}"
                 for i, d in zip(found.indices[0], found.distances[0])]
        return "<small>" + " | ".join(cells) + "</small>"

    def _agreement(self, feature_nn, pixel_nn, label) -> str:
        if label is None:
            return f"{self.layer}: feature vs pixel neighbours of the uploaded image"
        share = [int((self.dataset.labels[f.indices[0]] == label).sum()) for f in (feature_nn, pixel_nn)]
        k = len(feature_nn.indices[0])
        return (f"query #{self.query}: {share[0]}/{k} feature-space neighbours share its label, "
                f"{share[1]}/{k} pixel-space neighbours ({self.layer})")

    def snapshot(self) -> np.ndarray | None:
        return self._picture


def _framed(tile: np.ndarray, query_label, label: int) -> np.ndarray:
    """A tile with a green (same label as the query) or red (different) frame; grey for an upload."""
    colour = (150, 150, 150) if query_label is None else MATCH if label == query_label else MISMATCH
    out = np.empty((tile.shape[0] + 2 * BORDER, tile.shape[1] + 2 * BORDER, 3), np.uint8)
    out[:] = colour
    out[BORDER:-BORDER, BORDER:-BORDER] = tile
    return out


def _pad_rows(rows):
    width = max(r.shape[1] for r in rows)
    return [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
