"""GramMatrixView: a layer's C x C Gram matrix as a heatmap, two images side by side, and a channel pair.

G[i, j] is the average over positions of feature map i times feature map j: large where the two
channels fire at the same places. Two images with the same texture have similar Gram matrices even
when their content is arranged differently; that is what the style loss compares.
"""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import torch
import traitlets as t

from ..core.hooks import capture, frozen
from ..core.models import as_model
from ..core.render import encode, heatmap, tile_grid, to_uint8
from ..core.style import gram_matrix, layer_label
from ._base import View, image_widget
from ._picker import ImagePicker

MAP_PX = 128   # feature maps are drawn at this size


def spatial_layers(vm) -> list[str]:
    """Layers whose output is (N, C, H, W), in order: the ones a Gram matrix can be taken of."""
    from ..core.layers import list_layers

    return [i.name for i in list_layers(vm) if i.shape is not None and len(i.shape) == 3]


def layer_features(vm, image, layer: str) -> torch.Tensor:
    """The (C, H, W) activation of ``layer`` for one image, as the model sees it."""
    with torch.no_grad(), frozen(vm), capture(vm, layer) as rec:
        vm.module(vm.to_input(image))
    return rec[layer][0].detach().cpu()


class GramMatrixView(View):
    """Pick a layer: its Gram matrix for two images side by side, and the feature maps of one channel pair.

        cw.GramMatrixView(cw.load_model("shapes"), image)
    """

    css_class = "cw-gram-view"
    layer = t.Unicode(help="dotted name of the layer whose Gram matrix is shown").tag(sync=True)
    channel_i = t.Int(0, help="first channel of the pair shown").tag(sync=True)
    channel_j = t.Int(1, help="second channel of the pair shown").tag(sync=True)

    def __init__(self, model, image=None, other=None, layer: str | None = None, **kwargs):
        self.model = as_model(model)
        names = spatial_layers(self.model)
        if not names:
            raise ValueError(f"{self.model.name} has no layer with (C, H, W) output; a Gram matrix needs one")
        self._grams: list[np.ndarray] = []
        self._maps = None
        self.pickers = [ImagePicker(image, on_error=self.show_error), ImagePicker(other, on_error=self.show_error)]
        for picker, what in zip(self.pickers, ("image A", "image B")):
            picker.dropdown.description = what
            picker.default_for(self.model)
        options = self.pickers[1].dropdown.options
        if other is None and self.pickers[0].dropdown.value in options:  # B starts on another picture than A
            self.pickers[1].dropdown.value = options[(options.index(self.pickers[0].dropdown.value) + 1) % len(options)]
        self.layer_picker = w.Dropdown(options=[(layer_label(n), n) for n in names], description="layer")
        self.layer_picker.add_class("cw-layer")
        self.i_slider = w.IntSlider(0, min=0, max=1, description="channel i")
        self.i_slider.add_class("cw-channel-i")
        self.j_slider = w.IntSlider(1, min=0, max=1, description="channel j")
        self.j_slider.add_class("cw-channel-j")
        self.gram_images = [image_widget("cw-gram-a", width="256px"), image_widget("cw-gram-b", width="256px")]
        self.map_image = image_widget("cw-channel-maps")
        self.title = w.HTML(f"<b>Gram matrices</b> — {self.model.label}")
        self.pair_label = w.HTML()
        grams = w.HBox([w.VBox([w.HTML("A"), self.gram_images[0]]), w.VBox([w.HTML("B"), self.gram_images[1]])])
        super().__init__([self.title, *self.pickers, self.layer_picker, grams,
                          w.HBox([self.i_slider, self.j_slider]), self.map_image, self.pair_label], **kwargs)
        w.link((self.layer_picker, "value"), (self, "layer"))
        w.link((self.i_slider, "value"), (self, "channel_i"))
        w.link((self.j_slider, "value"), (self, "channel_j"))
        self.observe(self.guard(self._recompute), names=["layer"])
        self.observe(self.guard(self._pair), names=["channel_i", "channel_j"])
        for picker in self.pickers:
            picker.observe(self.guard(self._recompute), names="value")
        self.layer = layer or (self.model.cam_layer if self.model.cam_layer in names else names[len(names) // 2])
        self.guard(self._recompute)()

    @property
    def picker(self) -> ImagePicker:
        """Image A's picker: what ``set_image`` changes."""
        return self.pickers[0]

    def _recompute(self, _change=None) -> None:
        feats = [layer_features(self.model, p.value, self.layer) for p in self.pickers]
        self._grams = [gram_matrix(f).numpy() for f in feats]
        self._maps = feats
        hi = max(float(np.abs(g).max()) for g in self._grams) or 1.0  # one scale for both: comparable colours
        for widget, g in zip(self.gram_images, self._grams):
            widget.value = encode(_gram_picture(g, hi))
        c = feats[0].shape[0]
        with self.hold_trait_notifications():
            self.i_slider.max = self.j_slider.max = c - 1
        self._pair()
        diff = float(((self._grams[0] - self._grams[1]) ** 2).sum() / max((self._grams[1] ** 2).sum(), 1e-12))
        self.set_status(f"{layer_label(self.layer)}: {c} channels, {tuple(feats[0].shape[1:])} positions; "
                        f"style distance ||G_A - G_B||² / ||G_B||² = {diff:.3f}")

    def _pair(self, _change=None) -> None:
        if self._maps is None:
            return
        i, j = self.channel_i, self.channel_j
        tiles = [_map_picture(f[k]) for f in self._maps for k in (i, j)]
        self.map_image.value = encode(tile_grid(np.stack(tiles), columns=4, pad=2))
        values = ", ".join(f"{name}: {g[i, j]:.4g}" for name, g in zip("AB", self._grams))
        self.pair_label.value = (f"feature maps of channels {i} and {j} (A: first two, B: last two); "
                                 f"G[{i}, {j}] = mean over positions of F<sub>{i}</sub>·F<sub>{j}</sub> — {values}")

    def gram(self, which: int = 0) -> np.ndarray:
        """The Gram matrix shown for image A (0) or B (1), as a float array (C, C)."""
        return self._grams[which]

    def snapshot(self) -> np.ndarray | None:
        if not self._grams:
            return None
        hi = max(float(np.abs(g).max()) for g in self._grams) or 1.0
        pics = [_gram_picture(g, hi) for g in self._grams]
        return np.concatenate([pics[0], np.full((pics[0].shape[0], 8, 3), 255, np.uint8), pics[1]], axis=1)


def _gram_picture(g: np.ndarray, hi: float, size: int = 256) -> np.ndarray:
    """Signed Gram matrix -> coolwarm picture, enlarged with crisp cells to about ``size`` pixels."""
    pic = heatmap(g, "coolwarm", lo=-hi, hi=hi)
    scale = max(1, size // g.shape[0])
    return pic.repeat(scale, axis=0).repeat(scale, axis=1)


def _map_picture(fmap: torch.Tensor) -> np.ndarray:
    pic = heatmap(fmap.numpy(), "viridis")
    scale = max(1, MAP_PX // fmap.shape[-1])
    return to_uint8(pic.repeat(scale, axis=0).repeat(scale, axis=1))
