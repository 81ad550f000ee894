"""What every view shares: a static PNG in the display data, an in-place error line, a status line.

A view subclasses ``View`` (an ipywidgets VBox), builds its controls from stock widgets, and calls
``self.guard(...)``-wrapped callbacks, so a bad input shows a clear message in place instead of a
traceback, and the widget keeps working.
"""
from __future__ import annotations

import base64
import functools
import html
import traceback

import ipywidgets as w
import numpy as np

from ..core.render import encode


class View(w.VBox):
    """Base of every cnnviz widget (a VBox with a status line, an error line and a static picture)."""

    css_class = "cw-view"
    picker = None  # the ImagePicker that set_image fills (views that take an image set it)

    def __init__(self, children=(), **kwargs):
        self.status = w.HTML(value="", layout=w.Layout(min_height="1.4em"))
        self.status.add_class("cw-status")
        self.error = w.HTML(value="", layout=w.Layout(display="none"))
        self.error.add_class("cw-error")
        super().__init__(children=[*children, self.status, self.error], **kwargs)
        self.add_class("cw-view")
        self.add_class(self.css_class)

    # --- errors and status -------------------------------------------------------------------
    def show_error(self, err: BaseException | str) -> None:
        text = err if isinstance(err, str) else _describe(err)
        self.error.value = f'<div style="color:#b00020;white-space:pre-wrap">⚠ {html.escape(text)}</div>'
        self.error.layout.display = None

    def clear_error(self) -> None:
        self.error.value = ""
        self.error.layout.display = "none"

    def set_status(self, text: str) -> None:
        self.status.value = f'<span style="color:#555">{html.escape(text)}</span>'

    def guard(self, fn):
        """Wrap a callback: clear the error line, run, and show any exception in place."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            self.clear_error()
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # a widget never lets a callback's error escape into the kernel log
                self.show_error(err)
                return None
        return wrapper

    # --- the input image ---------------------------------------------------------------------
    def set_image(self, image) -> None:
        """Use ``image`` (anything ``cw.load_image`` takes; None: the view's own default) as if picked in the
        view's picker: the view's settings stay and it recomputes as it does for a pick (a long run is not
        started). A bad image shows a message in place and keeps the previous image and results.

            view.set_image(cw.sample_images()["cat"])
        """
        if self.picker is None:
            raise TypeError(f"{type(self).__name__} takes no image")
        self.guard(self.picker.show)(image)

    # --- static picture ----------------------------------------------------------------------
    def snapshot(self) -> np.ndarray | None:
        """The view's current picture as uint8 (H, W, 3); views override this."""
        return None

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        try:
            picture = self.snapshot()
        except Exception:
            picture = None
        if picture is not None and bundle is not None:
            bundle = dict(bundle)
            bundle["image/png"] = base64.b64encode(encode(picture)).decode("ascii")
        return bundle


def _describe(err: BaseException) -> str:
    """The user-facing message: our own errors are already clear; others get their type and place."""
    if isinstance(err, (ValueError, TypeError, KeyError, FileNotFoundError, RuntimeError)):
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        return f"{msg}"
    where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    return f"{type(err).__name__}: {err}" + (f" (at {where.filename}:{where.lineno})" if where else "")


def image_widget(css: str, fmt: str = "png", **layout) -> w.Image:
    img = w.Image(format=fmt, layout=w.Layout(**layout) if layout else w.Layout())
    img.add_class(css)
    return img
