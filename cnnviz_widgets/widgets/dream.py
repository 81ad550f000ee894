"""DeepDreamViewer: amplify what a layer already sees, octave by octave, live."""
from __future__ import annotations

import html

import ipywidgets as w
import traitlets as t

from ..core import generate
from ..core.layers import conv_layer_names
from ..core.models import as_model
from .ascent import AscentView, _styled, spatial_layers
from ._picker import ImagePicker


class DeepDreamViewer(AscentView):
    """DeepDream: pick an image and a layer; Run sets the layer's gradient equal to its activation and steps
    the image up that gradient, over several octaves (image scales).

        viewer = cw.DeepDreamViewer(cw.load_model("shapes"))
        viewer.layer = "features.conv3"; viewer.run().join()
    """

    css_class = "cw-dream-viewer"
    layer = t.Unicode(help="layer whose activations are amplified").tag(sync=True)
    octaves = t.Int(3, help="number of image scales").tag(sync=True)
    octave_scale = t.Float(1.4, help="size ratio between octaves").tag(sync=True)
    steps = t.Int(10, help="iterations per octave").tag(sync=True)
    lr = t.Float(0.02, help="step size (mean pixel change per step)").tag(sync=True)

    def __init__(self, model, image=None, **kwargs):
        self.model = as_model(model)
        run_row = self._init_run("Dream")
        self.picker = ImagePicker(image, on_error=self.show_error)
        self.picker.default_for(self.model)
        self.layer_picker = _styled(w.Dropdown(options=spatial_layers(self.model), description="layer"), "cw-layer")
        self.octave_slider = _styled(w.IntSlider(min=1, max=6, description="octaves"), "cw-octaves")
        self.scale_slider = _styled(w.FloatSlider(min=1.0, max=2.0, step=0.1, description="octave scale"),
                                    "cw-octave-scale")
        self.steps_slider = _styled(w.IntSlider(min=1, max=100, description="iterations"), "cw-steps")
        self.lr_box = _styled(w.FloatText(description="step size"), "cw-lr")
        title = w.HTML(f"<b>DeepDream</b> — I* = argmax Σ f(I)² · {html.escape(self.model.label)}")
        super().__init__([title, self.picker, w.HBox([self.layer_picker, self.octave_slider, self.scale_slider]),
                          w.HBox([self.steps_slider, self.lr_box]), w.HBox(run_row), self.frame, self.download],
                         **kwargs)
        self.layer = default_dream_layer(self.model)
        for name, control in [("layer", self.layer_picker), ("octaves", self.octave_slider),
                              ("octave_scale", self.scale_slider), ("steps", self.steps_slider), ("lr", self.lr_box)]:
            w.link((self, name), (control, "value"))
        self.picker.observe(self.guard(self._new_image), names="value")
        self._new_image()

    def _new_image(self, _change=None) -> None:
        """A new image: layer, octaves and steps stay; the dream so far is dropped."""
        self._reset_to(self.model.view(self.picker.value))
        self.set_status("pick a layer and press Dream")

    def _make_steps(self):
        steps = generate.deep_dream_steps(self.model, self.picker.value, self.layer, octaves=self.octaves,
                                          octave_scale=self.octave_scale, steps=self.steps, lr=self.lr)
        return steps, self.octaves * self.steps


def default_dream_layer(vm) -> str:
    """A middle conv layer: deep enough for patterns, shallow enough to keep the picture."""
    names = conv_layer_names(vm)
    return names[len(names) // 2] if names else spatial_layers(vm)[0]
