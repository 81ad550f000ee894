"""FoolingExplorer: change an image a little until the model says another class, as on the lecture's slide
(original, fooled, difference, 10x difference, with both predictions)."""
from __future__ import annotations

import html

import ipywidgets as w
import numpy as np
import traitlets as t

from ..core import generate
from ..core.models import as_model
from ..core.optimize import as_pixels
from ..core.render import tile_grid
from .ascent import DISPLAY_PX, AscentView, _styled
from ._picker import ImagePicker

PANELS = ("original", "fooled", "difference", "10x difference")


class FoolingExplorer(AscentView):
    """Pick an image and a target class; Run makes small gradient steps on the target's score until the
    model predicts it, then shows the four panels of the slide.

        explorer = cw.FoolingExplorer(cw.load_model("shapes"))
        explorer.target = 4; explorer.run().join(); explorer.result.linf
    """

    css_class = "cw-fooling-explorer"
    target = t.Int(0, help="class index the image should be taken for").tag(sync=True)
    steps = t.Int(100, help="most steps before giving up").tag(sync=True)
    lr = t.Float(1.0, help="step size in 0-255 pixel units (each pixel moves by this much per step)").tag(sync=True)

    def __init__(self, model, image=None, **kwargs):
        self.model = as_model(model)
        self.result = None
        run_row = self._init_run("Fool it")
        self.picker = ImagePicker(image, on_error=self.show_error)
        self.picker.default_for(self.model)
        classes = [(name, i) for i, name in enumerate(self.model.class_names)]
        self.target_picker = _styled(w.Dropdown(options=classes, description="target"), "cw-target")
        self.steps_slider = _styled(w.IntSlider(min=1, max=1000, description="max steps"), "cw-steps")
        self.lr_box = _styled(w.FloatText(description="step (0-255)"), "cw-lr")
        self.captions = w.HTML()
        self.captions.add_class("cw-captions")
        title = w.HTML(f"<b>Fooling images</b> — {html.escape(self.model.label)}")
        super().__init__([title, self.picker, w.HBox([self.target_picker, self.steps_slider, self.lr_box]),
                          w.HBox(run_row), self.frame, self.captions, self.download], **kwargs)
        self.target = self._runner_up()
        for name, control in [("target", self.target_picker), ("steps", self.steps_slider), ("lr", self.lr_box)]:
            w.link((self, name), (control, "value"))
        self.picker.observe(self.guard(self._new_image), names="value")
        self._new_image()

    def _runner_up(self) -> int:
        """A sensible first target: the model's second guess for the picked image."""
        top = self.model.predict(self.picker.value, k=2)
        return top[-1][0]

    def _new_image(self, _change=None) -> None:
        """A new image: target, steps and step size stay; the fooled result is dropped."""
        self._reset_to(self.model.view(self.picker.value))
        self.result, self.captions.value = None, ""
        i, name, p = self.model.predict(self.picker.value, k=1)[0]
        self.set_status(f"the model says {name} ({p:.1%}); pick a target and press Fool it")

    def _make_steps(self):
        self._original = as_pixels(self.model, self.picker.value)[:1].cpu()
        steps = generate.fooling_image_steps(self.model, self._original, self.target, steps=self.steps,
                                             lr=self.lr / 255)
        return steps, self.steps

    def _describe(self, step) -> str:
        probs = step.logits[0].softmax(-1)
        top = int(probs.argmax())
        names = self.model.class_names
        return (f"step {step.index}: the model says {names[top]} ({float(probs[top]):.1%}) · "
                f"target {names[self.target]} ({float(probs[self.target]):.1%})")

    def _finished(self, step, stopped: bool) -> None:
        self.result = generate.fooling_result(self.model, self._original, step.pixels, self.target, step.index)
        self.picture = fooling_panels(self.result)
        self.show_picture(self.picture, width=4 * DISPLAY_PX // 2)
        self.captions.value = fooling_captions(self.result, self.frame.layout.width)
        r = self.result
        verdict = "fooled" if r.fooled else ("stopped" if stopped else "not fooled")
        self.set_status(f"{verdict} after {r.steps} steps · largest pixel change {r.linf:.0f}/255")


def fooling_panels(result) -> np.ndarray:
    """The slide's row: original, fooled, difference, 10x difference (uint8)."""
    tiles = np.stack([result.original, result.image, result.difference_image(1), result.difference_image(10)])
    return tile_grid(tiles, columns=4, pad=2)


def fooling_captions(result, width: str = "100%") -> str:
    (_, n0, p0), (_, n1, p1) = result.original_prediction, result.fooled_prediction
    t0, t1 = result.target_probability
    cells = [f"{html.escape(n0)} {p0:.1%}", f"{html.escape(n1)} {p1:.1%}<br>(target {t0:.1%} → {t1:.1%})",
             "difference", "10x difference"]
    return f"<div style='display:flex;gap:8px;width:{width}'>" + "".join(
        f"<div style='flex:1;text-align:center;font-size:12px'><b>{html.escape(p)}</b><br>{c}</div>"
        for p, c in zip(PANELS, cells)) + "</div>"
