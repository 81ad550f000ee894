"""StyleTransferViewer: style transfer, texture synthesis and feature inversion, live, with loss curves.

The model is loaded and the images prepared inside the job (off the kernel thread), so the view
opens at once; every resize, grayscale conversion and the offline model choice is shown as a note.
"""
from __future__ import annotations

import io

import ipywidgets as w
import numpy as np
import traitlets as t

from ..core import style as S
from ..core.models import VisionModel
from ..core.render import encode
from ._base import View, image_widget
from ._job import Job
from ._picker import ImagePicker

MODES = {"style transfer": "transfer", "texture synthesis": "texture", "feature inversion": "inversion"}
CURVES = ("loss", "content", "style", "tv")
MAX_FRAMES = 120   # frames kept for the GIF (every shown frame, up to this many)


class StyleTransferViewer(View):
    """Paint a content image with a style image's texture (Gatys et al.), or synthesize a texture, or invert
    features; Run streams frames and loss curves, Stop keeps what was made.

        cw.StyleTransferViewer(content=cw.sample_images()["cat"], style=cw.sample_images()["gravel"])
    """

    css_class = "cw-style-viewer"
    mode = t.Unicode("transfer", help="'transfer', 'texture' (style only, from noise) or 'inversion' (content only)").tag(sync=True)
    content_weight = t.Float(1.0, help="weight of the relative content loss").tag(sync=True)
    style_weight = t.Float(10.0, help="weight of the relative style loss (mean over style layers)").tag(sync=True)
    tv_weight = t.Float(1e-3, help="weight of the total-variation smoothness term").tag(sync=True)
    size = t.Int(S.DEFAULT_SIZE, help="longer side of the images in pixels").tag(sync=True)
    steps = t.Int(100, help="optimizer steps per run").tag(sync=True)
    optimizer = t.Unicode("lbfgs", help="'lbfgs' or 'adam'").tag(sync=True)

    def __init__(self, content=None, style=None, model="vgg16", **kwargs):
        self._model_arg = model
        self._setup = None
        self._job = None
        self.frames: list[np.ndarray] = []
        self.losses: list[dict] = []
        self.result: np.ndarray | None = None
        self._inputs: np.ndarray | None = None
        self._build_controls(content, style)
        super().__init__([self.title, self.mode_picker, w.HBox([self.content_picker, self.style_picker]),
                          w.HBox([self._sliders_box(), self.layer_box]), self._buttons_box(), self.notes,
                          w.HBox([self.frame_image, self.curves]), self.inputs_image], **kwargs)
        self._link()
        self._show_inputs()

    @property
    def picker(self) -> ImagePicker:
        """The content picker: what ``set_image`` (and the Dashboard's image) changes."""
        return self.content_picker

    # --- building ------------------------------------------------------------------------------
    def _build_controls(self, content, style) -> None:
        self.title = w.HTML(f"<b>Style transfer</b> — model: {self._model_text()}")
        self.title.add_class("cw-model-note")
        self.mode_picker = _css(w.ToggleButtons(options=list(MODES.items()), value="transfer"), "cw-mode")
        self.content_picker = ImagePicker(content, on_error=self.show_error, default="photo: cat")
        self.content_picker.dropdown.description = "content"
        self.style_picker = ImagePicker(style, on_error=self.show_error, default="photo: gravel")
        self.style_picker.dropdown.description = "style"
        self.content_slider = _css(w.FloatLogSlider(1.0, base=10, min=-3, max=3, description="content w"), "cw-content-weight")
        self.style_slider = _css(w.FloatLogSlider(10.0, base=10, min=-2, max=4, description="style w"), "cw-style-weight")
        self.tv_slider = _css(w.FloatLogSlider(1e-3, base=10, min=-6, max=0, description="TV w"), "cw-tv-weight")
        self.size_slider = _css(w.IntSlider(S.DEFAULT_SIZE, min=S.MIN_SIZE, max=512, step=16, description="size"), "cw-size")
        self.steps_slider = _css(w.IntSlider(100, min=1, max=1000, description="steps"), "cw-steps")
        self.opt_picker = _css(w.ToggleButtons(options=["lbfgs", "adam"], value="lbfgs"), "cw-optimizer")
        self.layer_sliders = self._layer_sliders()
        self.inversion_layer = _css(w.Dropdown(options=self._inversion_options(), description="invert"), "cw-inversion-layer")
        self.layer_box = w.VBox([w.HTML("style-layer weights"), *self.layer_sliders.values(), self.inversion_layer])
        self.run_button = _css(w.Button(description="Run", button_style="primary", icon="play"), "cw-run")
        self.stop_button = _css(w.Button(description="Stop", icon="stop", disabled=True), "cw-stop")
        self.png_button = _css(w.Button(description="Save PNG", icon="save"), "cw-save-png")
        self.gif_button = _css(w.Button(description="Save GIF", icon="film"), "cw-save-gif")
        self.progress = _css(w.FloatProgress(0, min=0, max=1, layout=w.Layout(width="200px")), "cw-progress")
        self.notes = _css(w.HTML(), "cw-notes")
        self.frame_image = image_widget("cw-frame", width="320px")
        self.inputs_image = image_widget("cw-inputs", width="320px")
        self.curves = _loss_figure()

    def _sliders_box(self) -> w.VBox:
        return w.VBox([self.content_slider, self.style_slider, self.tv_slider, self.size_slider,
                       self.steps_slider, self.opt_picker])

    def _buttons_box(self) -> w.HBox:
        return w.HBox([self.run_button, self.stop_button, self.progress, self.png_button, self.gif_button])

    def _layer_sliders(self) -> dict[str, w.FloatSlider]:
        sliders = {}
        for name in self._layers()[1]:
            slider = w.FloatSlider(1.0, min=0, max=2, step=0.1, description=S.layer_label(name).split(" ")[-1].strip("()"))
            sliders[name] = _css(slider, "cw-layer-weight")
        return sliders

    def _link(self) -> None:
        pairs = [(self.mode_picker, "mode"), (self.content_slider, "content_weight"), (self.style_slider, "style_weight"),
                 (self.tv_slider, "tv_weight"), (self.size_slider, "size"), (self.steps_slider, "steps"),
                 (self.opt_picker, "optimizer")]
        for widget, name in pairs:
            w.link((widget, "value"), (self, name))
        self.run_button.on_click(self.guard(self.run))
        self.stop_button.on_click(self.guard(self.stop))
        self.png_button.on_click(self.guard(lambda _b: self.save_png()))
        self.gif_button.on_click(self.guard(lambda _b: self.save_gif()))
        for picker in (self.content_picker, self.style_picker):
            picker.observe(self.guard(self._show_inputs), names="value")
        self.observe(self.guard(self._show_inputs), names=["mode"])

    # --- model and layers (known without loading the model) ----------------------------------------
    def _model_text(self) -> str:
        arg = self._model_arg
        if isinstance(arg, VisionModel):
            return arg.label
        if arg in (None, "vgg16", "vgg19"):
            return f"{arg or 'vgg16'} with ImageNet weights if cached, else offline: random-weight VGG-16 (seed {S.OFFLINE_SEED})"
        return str(arg)

    def _layers(self) -> tuple[str, tuple[str, ...]]:
        arg = self._model_arg
        if isinstance(arg, VisionModel) or not isinstance(arg, str):
            return S.default_layers(S.style_model(arg)[0])
        return S.default_layers(_Named(arg or "vgg16"))

    def _inversion_options(self) -> list[tuple[str, str]]:
        content, style = self._layers()
        names = list(dict.fromkeys([*style, content]))
        return [(S.layer_label(n), n) for n in names]

    # --- running ---------------------------------------------------------------------------------
    def run(self, _button=None) -> Job:
        """Start a run with the current settings (a Job; ``view.job.join()`` waits for it)."""
        if self._job is not None and self._job.running:
            raise RuntimeError("a run is in progress; press Stop first")
        self.frames, self.losses = [], []
        self.progress.value, self.progress.max = 0, self.steps
        self._set_running(True)
        self.set_status("preparing the model and images ...")
        self._job = Job(self._steps(), on_step=self._on_step, on_done=self._on_done, on_error=self._on_error,
                        interval=0.2, name="cnnviz-style")
        return self._job.start()

    def stop(self, _button=None) -> None:
        if self._job is not None:
            self._job.stop()

    @property
    def job(self) -> Job | None:
        return self._job

    def _steps(self):
        content = self.content_picker.value if self.mode != "texture" else None
        style = self.style_picker.value if self.mode != "inversion" else None
        setup = S.prepare_style(content, style, self._model_arg, self.size)
        self._setup = setup
        self.notes.value = _notes_html(setup)
        self.title.value = f"<b>Style transfer</b> — model: {setup.model_note}"
        yield from self._ascent(setup).steps()

    def _ascent(self, setup):
        options = dict(steps=self.steps, optimizer=self.optimizer, tv_weight=self.tv_weight)
        if self.mode == "texture":
            return S.texture_ascent(setup, style_weight=self.style_weight, weights=self._weights(setup), **options)
        if self.mode == "inversion":
            return S.inversion_ascent(setup, self._inversion_layer(setup), content_weight=self.content_weight, **options)
        return S.transfer_ascent(setup, content_weight=self.content_weight, style_weight=self.style_weight,
                                 weights=self._weights(setup), **options)

    def _weights(self, setup) -> dict[str, float] | None:
        """The sliders' weights, when they name the loaded model's style layers (vgg19 falls back to vgg16 offline)."""
        if set(self.layer_sliders) != set(S.default_layers(setup.model)[1]):
            return None
        return {name: s.value for name, s in self.layer_sliders.items()}

    def _inversion_layer(self, setup) -> str:
        content, style = S.default_layers(setup.model)
        return self.inversion_layer.value if self.inversion_layer.value in (content, *style) else content

    def _on_step(self, step) -> None:
        frame = step.image()
        self.result = frame
        self.losses.append({"step": step.index, **S.step_losses(step)})
        if len(self.frames) < MAX_FRAMES:
            self.frames.append(frame)
        self.frame_image.value = encode(frame, scale=max(1, 256 // max(frame.shape[:2])))
        self.progress.value = step.index + 1
        self._draw_curves()
        terms = ", ".join(f"{k} {v:.4g}" for k, v in S.step_losses(step).items())
        self.set_status(f"step {step.index + 1}/{self.steps}: {terms}")

    def _on_done(self, last) -> None:
        self._set_running(False)
        stopped = self._job is not None and self._job.stopped
        if last is None:
            self.set_status("stopped before the first step")
            return
        verb = "stopped at" if stopped else "done:"
        self.set_status(f"{verb} step {last.index + 1}/{self.steps}; " + ", ".join(
            f"{k} {v:.4g}" for k, v in S.step_losses(last).items()) + " — the picture is kept; Save PNG / GIF")

    def _on_error(self, err) -> None:
        self._set_running(False)
        self.show_error(err)

    def _set_running(self, running: bool) -> None:
        self.run_button.disabled = running
        self.stop_button.disabled = not running

    def _draw_curves(self) -> None:
        steps = [row["step"] for row in self.losses]
        with self.curves.batch_update():
            for trace in self.curves.data:
                trace.x = steps
                trace.y = [row.get(trace.name) for row in self.losses]

    # --- inputs, saving, static picture ---------------------------------------------------------------
    def _show_inputs(self, _change=None) -> None:
        pics = [np.asarray(p.value.resize((128, 128))) for p in (self.content_picker, self.style_picker)]
        self._inputs = np.concatenate([pics[0], np.full((128, 6, 3), 255, np.uint8), pics[1]], 1)
        self.inputs_image.value = encode(self._inputs)
        self.set_status(f"mode: {self.mode} · content (left), style (right) · press Run")

    def save_png(self, path: str = "style_result.png") -> str:
        """Write the current picture; returns the path."""
        if self.result is None:
            raise ValueError("nothing to save yet: press Run first")
        with open(path, "wb") as f:
            f.write(encode(self.result))
        self.set_status(f"saved {path}")
        return path

    def gif_bytes(self, duration_ms: int = 80) -> bytes:
        """The frames shown so far as an animated GIF."""
        from PIL import Image

        if not self.frames:
            raise ValueError("no frames yet: press Run first")
        images = [Image.fromarray(f) for f in self.frames]
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        return buf.getvalue()

    def save_gif(self, path: str = "style_result.gif") -> str:
        with open(path, "wb") as f:
            f.write(self.gif_bytes())
        self.set_status(f"saved {path} ({len(self.frames)} frames)")
        return path

    def snapshot(self) -> np.ndarray | None:
        return self.result if self.result is not None else self._inputs


class _Named:
    """Just a name, for default_layers before the model is loaded."""

    def __init__(self, name: str):
        self.name = name


def _css(widget, css: str):
    widget.add_class(css)
    return widget


def _notes_html(setup) -> str:
    items = [setup.model_note, *setup.notes]
    return "<ul style='margin:0;color:#8a5a00'>" + "".join(f"<li>{n}</li>" for n in items) + "</ul>"


def _loss_figure():
    import plotly.graph_objects as go

    fig = go.FigureWidget(layout=dict(width=360, height=260, margin=dict(l=40, r=10, t=30, b=30),
                                      title="losses", yaxis_type="log", xaxis_title="step"))
    for name in CURVES:
        fig.add_scatter(x=[], y=[], name=name, mode="lines")
    return fig
