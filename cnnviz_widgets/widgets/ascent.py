"""GradientAscentViewer: class and neuron visualization, live, with the lecture's regularizers.

Also home of ``AscentView``, the base the fooling and DeepDream views share: Run / Stop through a ``Job``,
live frames, a record of the objective, and Save (PNG of the final image, GIF of the run).
"""
from __future__ import annotations

import base64
import html
import inspect
import io
import threading
from pathlib import Path

import ipywidgets as w
import numpy as np
import traitlets as t
from PIL import Image

from ..core import generate
from ..core.models import as_model
from ..core.render import encode
from ._base import View, image_widget
from ._job import Job

MAX_FRAMES = 120          # frames kept for the GIF (older ones thinned out, the first and last always kept)
DISPLAY_PX = 256          # frames are enlarged (crisp pixels) to about this width
REGULARIZER_DEFAULTS = {k: p.default for k, p in inspect.signature(generate.regularizers).parameters.items()}


class AscentView(View):
    """A view that runs a stream of Steps live: Run, Stop, a frame, progress, Save PNG + GIF.

    Subclasses implement ``_make_steps() -> (steps, total)`` (raise ValueError for bad input) and may override
    ``_picture(step)`` (the frame of a step) and ``_finished(step, stopped)``.
    """

    frame_interval = 0.1   # seconds between drawn frames (Job's throttle)

    def _init_run(self, run_label: str = "Run") -> list:
        self.run_button = _button(run_label, "cw-run", style="primary")
        self.stop_button = _button("Stop", "cw-stop", disabled=True)
        self.save_button = _button("Save PNG + GIF", "cw-save", disabled=True)
        self.progress = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="180px"))
        self.progress.add_class("cw-progress")
        self.frame = image_widget("cw-frame")
        self.frame_style = w.HTML("<style>.cw-frame { image-rendering: pixelated; }</style>")
        self.download = w.HTML()
        self.download.add_class("cw-download")
        self.run_button.on_click(self.guard(lambda _b: self.run()))
        self.stop_button.on_click(lambda _b: self.stop())
        self.save_button.on_click(self.guard(lambda _b: self.save()))
        self.job: Job | None = None
        self.frames: list[np.ndarray] = []
        self.history: list[tuple[int, float]] = []
        self.last_step = None
        self.picture: np.ndarray | None = None
        self.saved_png: bytes | None = None
        self.saved_gif: bytes | None = None
        self._total = 1
        return [self.run_button, self.stop_button, self.progress, self.save_button, self.frame_style]

    # --- running --------------------------------------------------------------------------------
    def run(self) -> Job:
        """Start (or restart) the computation with the current settings; returns the Job (``.join()`` waits)."""
        self._stop_and_wait()
        self.clear_error()
        steps, total = self._make_steps()
        self.frames, self.history, self.last_step, self._total = [], [], None, max(1, total)
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.set_status("starting…")
        self._painter = Painter(self._on_step, on_error=self.show_error)
        self.job = Job(self._recorded(steps), on_step=self._painter.submit, on_done=self._on_done,
                       on_error=self._on_error, interval=self.frame_interval, name=f"cnnviz-{self.css_class}")
        return self.job.start()

    def stop(self) -> None:
        """Stop after the current step; what was made so far stays shown and saveable."""
        if self.job is not None:
            self.job.stop()

    def _stop_and_wait(self, timeout: float = 5.0) -> None:
        self.stop()
        if self.job is not None:
            self.job.join(timeout)

    def _reset_to(self, picture: np.ndarray) -> None:
        """A new input image: wait for a run to stop (no late frame of the old image lands on the new one),
        drop what it made, and show ``picture``; the settings stay."""
        self._stop_and_wait()
        self.frames, self.history, self.last_step = [], [], None
        self.picture = picture
        self.show_picture(picture)
        self.progress.value = 0.0
        self.download.value = ""

    def _recorded(self, steps):
        try:
            for step in steps:
                self.history.append((step.index, step.value))
                yield step
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()  # hooks removed and the model restored now, not when garbage collected

    def _on_step(self, step) -> None:
        self.last_step = step
        self._show(step)

    def _show(self, step) -> None:
        self.picture = self._picture(step)
        self._keep_frame(self.picture)
        self.show_picture(self.picture)
        self.progress.value = min(1.0, (step.index + 1) / self._total)
        self.set_status(self._describe(step))
        self._plot()

    def _describe(self, step) -> str:
        return f"step {step.index + 1}/{self._total} · objective {step.value:.4g}"

    def _on_done(self, last) -> None:
        self._painter.close()  # the last frame drawn before the final picture
        stopped = bool(self.job and self.job.stopped)
        self._idle()
        if last is not None:
            self._finished(last, stopped)

    def _on_error(self, err) -> None:
        self._painter.close()
        self._idle()
        if self.job is not None and self.job.last is not None and self.job.last is not self.last_step:
            self._on_step(self.job.last)  # the last good step, kept on screen and saveable
        self.show_error(err)

    def _idle(self) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.save_button.disabled = self.picture is None

    def _finished(self, step, stopped: bool) -> None:
        how = "stopped at" if stopped else "done:"
        self.set_status(f"{how} step {step.index + 1}/{self._total} · objective {step.value:.4g}")

    # --- subclass hooks ---------------------------------------------------------------------------
    def _make_steps(self):
        raise NotImplementedError

    def _picture(self, step) -> np.ndarray:
        return step.image()

    def _plot(self) -> None:
        pass

    # --- frames and saving ------------------------------------------------------------------------
    def show_picture(self, picture: np.ndarray, width: int = DISPLAY_PX) -> None:
        """Send the picture at its own size (a small PNG: cheap to encode on every frame); the browser
        enlarges it with crisp pixels to about ``width`` px."""
        scale = max(1, round(width / picture.shape[1]))
        with self.frame.hold_sync():
            self.frame.layout.width = f"{picture.shape[1] * scale}px"
            self.frame.value = encode(picture)

    def _keep_frame(self, picture: np.ndarray) -> None:
        self.frames.append(picture)
        if len(self.frames) > MAX_FRAMES:
            self.frames = self.frames[:1] + self.frames[2:-1:2] + self.frames[-1:]

    def save(self, path: str | Path | None = None) -> None:
        """Make ``saved_png`` (final image) and ``saved_gif`` (the run) and offer them as download links;
        with ``path`` also write the file (".png" or ".gif" by its suffix)."""
        if self.picture is None:
            raise ValueError("nothing to save yet: press Run first")
        self.saved_png = encode(self.picture)
        self.saved_gif = frames_to_gif(self.frames or [self.picture])
        name = self.css_class.removeprefix("cw-")
        self.download.value = (f"{_link(self.saved_png, 'image/png', name + '.png')} · "
                               f"{_link(self.saved_gif, 'image/gif', name + '.gif')}")
        if path is not None:
            path = Path(path)
            if path.suffix.lower() not in (".png", ".gif"):
                raise ValueError(f"save to a .png or .gif file, not {path.name!r}")
            path.write_bytes(self.saved_gif if path.suffix.lower() == ".gif" else self.saved_png)

    def snapshot(self) -> np.ndarray | None:
        return self.picture


class Painter:
    """Draws the latest submitted step on its own thread, so encoding and sending frames never delays the
    optimization (the Job's worker only hands a step over); steps submitted faster than drawn are skipped."""

    def __init__(self, draw, on_error=None):
        self._draw, self._on_error = draw, on_error
        self._latest, self._closed = None, False
        self._lock, self._wake = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cnnviz-painter", daemon=True)
        self._thread.start()

    def submit(self, step) -> None:
        with self._lock:
            self._latest = step
        self._wake.set()

    def close(self) -> None:
        """Draw what is pending, then end the thread (returns when done)."""
        with self._lock:
            self._closed = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                step, self._latest, closed = self._latest, None, self._closed
                self._wake.clear()
            if step is not None:
                try:
                    self._draw(step)
                except Exception as err:  # shown in place; the optimization goes on
                    if self._on_error is not None:
                        self._on_error(err)
            if closed:
                return


def frames_to_gif(frames, duration_ms: int = 80) -> bytes:
    """uint8 (H, W, 3) frames -> looping animated GIF bytes (all at the last frame's size)."""
    size = frames[-1].shape[1::-1]
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)).resize(size) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def _link(data: bytes, mime: str, filename: str) -> str:
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return f'<a download="{html.escape(filename)}" href="{uri}">{html.escape(filename)} ({len(data) // 1024 + 1} KB)</a>'


def _button(label: str, css: str, style: str = "", disabled: bool = False) -> w.Button:
    button = w.Button(description=label, button_style=style, disabled=disabled, layout=w.Layout(width="auto"))
    button.add_class(css)
    return button


def spatial_layers(vm) -> list[str]:
    """Layer names offered for channel objectives: the model's default layers first, then every module."""
    names = [n for n, _ in vm.module.named_modules() if n]
    first = [n for n in (vm.cam_layer, vm.filter_layer) if n in names]
    return first + [n for n in names if n not in first]


class GradientAscentViewer(AscentView):
    """Gradient ascent live: the image that maximizes a class score (or a channel), with the lecture's
    regularizers (L2, blur every k steps, clip small pixels, clip small contributions).

        viewer = cw.GradientAscentViewer(cw.load_model("shapes"))
        viewer.target = "star"; viewer.run().join()
    """

    css_class = "cw-ascent-viewer"
    kind = t.Enum(["class", "channel"], "class", help="maximize a class score or a channel's mean").tag(sync=True)
    target = t.Unicode(help="class name (or index as text) to visualize").tag(sync=True)
    layer = t.Unicode(help="layer of the channel objective (dotted name)").tag(sync=True)
    channel = t.Int(0, help="channel index in the layer").tag(sync=True)
    steps = t.Int(100, help="number of steps").tag(sync=True)
    lr = t.Float(0.05, help="step size (Adam)").tag(sync=True)

    def __init__(self, model, target=None, **kwargs):
        self.model = as_model(model)
        run_row = self._init_run()
        self.kind_picker = _styled(w.ToggleButtons(options=["class", "channel"], description="maximize"), "cw-kind")
        self.class_box = _styled(w.Combobox(options=list(self.model.class_names), placeholder="type a class…",
                                            description="class", ensure_option=False), "cw-class")
        self.layer_picker = _styled(w.Dropdown(options=spatial_layers(self.model), description="layer"), "cw-layer")
        self.channel_box = _styled(w.BoundedIntText(min=0, max=100000, description="channel"), "cw-channel")
        self.steps_slider = _styled(w.IntSlider(min=2, max=1000, description="steps"), "cw-steps")
        self.lr_box = _styled(w.FloatText(description="step size"), "cw-lr")
        self.regularizers = RegularizerControls()
        self.plot = None  # plotly FigureWidget, made on the first Run (its import takes seconds)
        self.plot_box = w.Box()
        self.plot_box.add_class("cw-objective-plot-box")
        title = w.HTML(f"<b>Gradient ascent</b> — I* = argmax S(I) + R(I) · {html.escape(self.model.label)}")
        super().__init__([title, self.kind_picker, w.HBox([self.class_box]),
                          w.HBox([self.layer_picker, self.channel_box]),
                          w.HBox([self.steps_slider, self.lr_box]), self.regularizers, w.HBox(run_row),
                          w.HBox([self.frame, self.plot_box]), self.download], **kwargs)
        self.target = str(target) if target is not None else self.model.class_names[0]
        self.layer = self.model.cam_layer or self.layer_picker.options[0]
        for name, control in [("kind", self.kind_picker), ("target", self.class_box), ("layer", self.layer_picker),
                              ("channel", self.channel_box), ("steps", self.steps_slider), ("lr", self.lr_box)]:
            w.link((self, name), (control, "value"))
        self.observe(self._show_target_controls, names="kind")
        self._show_target_controls()
        flat = np.broadcast_to((np.array(self.model.mean) * 255).astype(np.uint8), (*self.model.input_size, 3))
        self.show_picture(flat)  # the lecture's start
        self.set_status("choose a class (or a layer and channel) and press Run")

    def _show_target_controls(self, _change=None) -> None:
        channel = self.kind == "channel"
        self.class_box.layout.display = "none" if channel else None
        self.layer_picker.layout.display = self.channel_box.layout.display = None if channel else "none"

    def _target_index(self) -> int:
        text = self.target.strip()
        return self.model.class_index(int(text) if text.isdigit() else text)  # ValueError with close matches

    def _make_steps(self):
        if self.plot is None:
            self.plot = _objective_plot()
            self.plot_box.children = [self.plot]
        options = dict(steps=self.steps, lr=self.lr, **self.regularizers.settings())
        if self.kind == "class":
            return generate.class_visualization_steps(self.model, self._target_index(), **options), self.steps
        return generate.neuron_visualization_steps(self.model, self.layer, self.channel, **options), self.steps

    def _plot(self) -> None:
        if self.history:
            xs, ys = zip(*self.history)
            with self.plot.batch_update():
                self.plot.data[0].x, self.plot.data[0].y = xs, ys


class RegularizerControls(w.VBox):
    """The lecture's regularizers with their defaults: L2 weight, blur every k steps (sigma), clip pixels
    with small norm / small contribution (percentiles), jitter; plus where to start and the parameterization."""

    def __init__(self):
        d = REGULARIZER_DEFAULTS
        self.l2_weight = _styled(w.FloatText(d["l2_weight"], description="L2 weight"), "cw-l2")
        self.blur_every = _styled(w.IntSlider(d["blur_every"], min=0, max=20, description="blur every"), "cw-blur-every")
        self.blur_sigma = _styled(w.FloatSlider(d["blur_sigma"], min=0, max=3, step=0.1, description="blur σ"),
                                  "cw-blur-sigma")
        self.norm_percentile = _styled(w.FloatSlider(d["norm_percentile"], min=0, max=90, step=1,
                                                     description="clip norm %"), "cw-norm-percentile")
        self.contribution_percentile = _styled(w.FloatSlider(d["contribution_percentile"], min=0, max=90, step=1,
                                                             description="clip contrib %"), "cw-contribution-percentile")
        self.jitter = _styled(w.IntSlider(d["jitter"], min=0, max=16, description="jitter px"), "cw-jitter")
        self.start = _styled(w.Dropdown(options=["noise", "zeros"], description="start"), "cw-start")
        self.param = _styled(w.Dropdown(options=["pixels", "fourier", "decorrelated"], description="image as"),
                             "cw-param")
        super().__init__([w.HBox([self.l2_weight, self.blur_every, self.blur_sigma]),
                          w.HBox([self.norm_percentile, self.contribution_percentile, self.jitter]),
                          w.HBox([self.start, self.param])])
        self.add_class("cw-regularizers")

    def settings(self) -> dict:
        names = list(REGULARIZER_DEFAULTS) + ["start", "param"]
        return {name: getattr(self, name).value for name in names}


def _objective_plot():
    import plotly.graph_objects as go

    fig = go.FigureWidget(data=[go.Scatter(x=[], y=[], mode="lines", name="objective")],
                          layout=dict(width=320, height=240, margin=dict(l=40, r=10, t=30, b=30),
                                      title=dict(text="objective", font=dict(size=12)), showlegend=False))
    fig.add_class("cw-objective-plot")
    return fig


def _styled(control, css: str):
    control.add_class(css)
    control.style = {"description_width": "initial"}
    return control
