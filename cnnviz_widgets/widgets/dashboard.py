"""Dashboard: the whole lecture in one widget -- a tab per view, one model picker, one image picker.

    cw.Dashboard()                                  # embedded shapes model, every view
    cw.Dashboard("resnet18")                        # official ImageNet weights (random if you pick it)
    cw.Dashboard(my_module, tabs=["Filters", "Saliency"])

A model named by a string -- at construction or in the model picker -- is loaded off the kernel's thread
(a ``Job``: importing torch alone takes seconds, a large torchvision model more). At construction the
Dashboard waits up to ``INLINE_S`` for it (enough for the embedded model once torch is imported), so it
usually appears complete; otherwise its shell -- pickers, tabs, a "loading model…" status -- appears at
once, the model in use stays until the new one is there, and the shown tab fills in when it is ready
(``dash.ready()`` waits for that from code). A model passed in as an ``nn.Module`` or ``VisionModel`` is
used at once.
Tabs are built the first time they are shown (a registry maps a tab's name to a factory
``factory(model, image) -> widget``). Choosing a model rebuilds
only the views that depend on it; choosing an image (the shared ``ImagePicker``) hands it to every
view that takes one with ``view.set_image(image)``, so the settings made in a tab stay (a tab of your own
whose widget has no ``set_image`` is rebuilt with ``image=`` instead).
A view that is missing or fails to build shows its error inside its own tab; the others keep working.
All state lives on the instance: several dashboards in one notebook do not interfere.
"""
from __future__ import annotations

import html
import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import ipywidgets as w
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.images import to_array
from ._base import View, _describe
from ._job import Job
from ._picker import ImagePicker

if TYPE_CHECKING:  # torch is imported only where a model is loaded (off the kernel's thread for a name)
    from ..core.models import VisionModel

#: torchvision classifiers offered in the model picker (the ones the course notebooks use).
COURSE_MODELS = ("resnet18", "alexnet", "vgg16", "resnet101", "densenet121", "squeezenet1_1")
WEIGHT_KINDS = {"official": "official", "random": "random", "embedded": "embedded", "user": "yours",
                "file": "from a file"}
DATASET_SIZE = 300       # shapes images behind the Neighbours and Embedding tabs
INLINE_S = 0.5           # a first load that ends within this is waited for: the Dashboard (and the static PNG
                         # a saved notebook keeps) then shows the first tab; a longer one goes on in the background
EACH_DEFAULT = "each view's default"   # the image picker's entry that hands None (a view's own default) on


@dataclass(frozen=True)
class Tab:
    """A tab of the Dashboard: how to build its view and what it depends on.

    ``factory(model, image)`` returns the widget; ``image`` is None for "the view's own default".
    ``uses_model=False`` keeps the view when the model changes (Style uses its own network);
    a view with ``uses_image`` takes a new image in place with ``set_image(image)`` (see ``View``).
    """

    factory: Callable
    uses_model: bool = True
    uses_image: bool = True


def _view_class(module: str, name: str):
    """A view class, imported when its tab is first shown (a missing module fails only that tab)."""
    return getattr(importlib.import_module(f"cnnviz_widgets.widgets.{module}"), name)


def default_tabs(dataset_size: int = DATASET_SIZE, seed: int = 0) -> dict[str, Tab]:
    """A fresh registry of the lecture's views, in lecture order (a new dict per Dashboard)."""
    cache = {}

    def dataset():  # one shapes data set per Dashboard, shared by Neighbours and Embedding
        if "shapes" not in cache:
            from .. import image_dataset
            cache["shapes"] = image_dataset("shapes", n=dataset_size, seed=seed)
        return cache["shapes"]

    def with_image(module, name):
        return lambda model, image: _view_class(module, name)(model, image=image)

    return {
        "Filters": Tab(lambda model, image: _view_class("filter_grid", "FilterGrid")(model), uses_image=False),
        "Neighbours": Tab(lambda model, image: _view_class("neighbors", "NeighborsExplorer")(model, dataset()),
                          uses_image=False),
        "Embedding": Tab(lambda model, image: _view_class("scatter", "EmbeddingScatter")(model, dataset()),
                         uses_image=False),
        "Occlusion": Tab(with_image("occlusion", "OcclusionExplorer")),
        "Saliency": Tab(with_image("saliency", "SaliencyExplorer")),
        "Gradient ascent": Tab(lambda model, image: _view_class("ascent", "GradientAscentViewer")(model),
                               uses_image=False),
        "Fooling": Tab(with_image("fooling", "FoolingExplorer")),
        "DeepDream": Tab(with_image("dream", "DeepDreamViewer")),
        "Style": Tab(lambda model, image: _view_class("style", "StyleTransferViewer")(content=image),
                     uses_model=False),
    }


def _registry(tabs) -> dict[str, Tab]:
    if tabs is None:
        return default_tabs()
    if isinstance(tabs, Mapping):
        return {str(name): spec if isinstance(spec, Tab) else Tab(spec) for name, spec in tabs.items()}
    if isinstance(tabs, Sequence) and not isinstance(tabs, str):
        known = default_tabs()
        unknown = [name for name in tabs if name not in known]
        if unknown:
            raise ValueError(f"unknown tab(s) {unknown}; choose from {list(known)} or pass a dict name -> factory")
        return {name: known[name] for name in tabs}
    raise TypeError("tabs is a list of tab names or a dict name -> factory(model, image)")


class Dashboard(View):
    """Every view of the lecture in one widget, with one model picker and one image picker.

        dash = cw.Dashboard()                 # embedded shapes model
        dash.select("Saliency"); dash.set_image(cw.sample_images()["cat"])
        dash.set_model("resnet18", weights="random")
    """

    css_class = "cw-dashboard"

    def __init__(self, model="shapes", image=None, tabs=None, weights="official", **kwargs):
        if model is None:
            raise ValueError(NO_MODEL)
        self._tabs = _registry(tabs)
        if not self._tabs:
            raise ValueError("a Dashboard needs at least one tab")
        self._names = list(self._tabs)
        self._views: dict[str, object] = {}    # tab name -> its built view
        self._errors: dict[str, str] = {}      # tab name -> why it could not be built
        self._stale: set[str] = set()          # built tabs to rebuild when next shown
        self._pending: set[str] = set()        # built tabs to hand the new image to when next shown
        self._syncing = False
        self._doing = ""
        self._lock = threading.RLock()         # the loader's thread and the kernel's both build tabs
        self._loading: Job | None = None       # the latest background load of a model named by a string
        self._in_flight = False                # whether that load is still going on
        self._load_error = ""                  # why the first load failed, while there is no model
        named = isinstance(model, str)
        self._wanted = ("", "official")        # (name, weights) of the model last asked for by name
        self.model: VisionModel | None = None if named else _load(model, weights)  # None until loaded
        self._user_model = self.model if self.model is not None and self.model.weights in ("user", "file") else None
        header = w.VBox([self._model_bar(), self._image_bar(image)])
        header.add_class("cw-dashboard-bar")
        self.tabs = self._tab_widget()
        super().__init__([header, self.tabs], **kwargs)
        self.children = [header, self.status, self.error, self.tabs]  # status and errors above the tabs
        if named:
            self._start_loading(model, weights)
            self._loading.join(INLINE_S)  # a quick load (torch already imported) ends with the first tab built
        else:
            self._sync_model_picker()
            self._show_tab(self._names[0])

    # --- public API --------------------------------------------------------------------------
    @property
    def current(self) -> str:
        """The name of the tab shown now."""
        return self._names[self.tabs.selected_index or 0]

    @property
    def views(self) -> dict:
        """The views built so far, by tab name (tabs not yet shown are absent; none while the model loads)."""
        return dict(self._views)

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the model named at construction has loaded and the shown tab is built (at once when a
        model was passed in). True when the Dashboard has its model; False on timeout, or when the load failed
        (the error shows in place and another model can be picked).

            dash = cw.Dashboard()
            dash.ready(); dash.views["Filters"]
        """
        if self._loading is not None and not self._loading.join(timeout):
            return False
        return self.model is not None

    def tab_error(self, name: str) -> str | None:
        """Why tab ``name`` could not be built, or None."""
        return self._errors.get(self._check_tab(name))

    def select(self, name: str) -> object:
        """Show tab ``name`` (building its view if needed) and return its view (None on error).
        Waits for a model still loading."""
        index = self._names.index(self._check_tab(name))
        self.ready()
        self.tabs.selected_index = index
        return self._views.get(name)

    def set_model(self, model, weights="official") -> VisionModel:
        """Use another model in every view that depends on one; raises and keeps the previous one on error.
        Waits for a model still loading first."""
        self.ready()
        self._busy(f"loading {model if isinstance(model, str) else 'your model'}…")
        try:
            vm = _load(model, weights)
        finally:
            self._busy("")
        with self._lock:
            self._load_error = ""
            self._use(vm)
            self._invalidate(self._opened(lambda tab: tab.uses_model))
            if self.current not in self._views and self.current not in self._errors:  # none loaded before
                self._show_tab(self.current)
        return vm

    # --- models named by a string, loaded in the background ----------------------------------------
    def _start_loading(self, name: str, weights) -> None:
        """Import torch and load ``name`` on a Job's thread (the pickers wait, disabled); the model in use
        stays until the new one is there, then every view that depends on it is rebuilt when shown."""
        def steps():
            yield _load(name, weights)

        self._wanted = (name, "random" if weights is None else "official")
        self._in_flight, self._load_error = True, ""
        self._doing = "loading model…" if self.model is None else f"loading {name}…"
        self._sync_model_picker()
        if self.model is None:
            self._note(self.current)
        self._loading = Job(steps(), on_done=self.guard(self._loaded), on_error=self._load_failed,
                            name="cnnviz-dashboard-load").start()

    def _loaded(self, vm: VisionModel) -> None:
        with self._lock:
            self._doing, self._in_flight = "", False
            self._use(vm)
            self._invalidate(self._opened(lambda tab: tab.uses_model))
            self._show_tab(self.current)

    def _load_failed(self, err: BaseException) -> None:
        with self._lock:
            self._doing, self._in_flight = "", False
            message = f"could not load {self._wanted[0]}: {_describe(err)}"
            self.show_error(message)
            self._sync_model_picker()  # the pickers open again, on the model still in use (if any)
            if self.model is None:
                self._load_error = message
                self._note(self.current)

    def _use(self, vm: VisionModel) -> None:
        self.model = vm
        if vm.weights in ("user", "file"):
            self._user_model = vm
        self._sync_model_picker()

    # --- the two pickers ---------------------------------------------------------------------
    def _model_bar(self) -> w.HBox:
        self.model_picker = w.Dropdown(description="model", layout=w.Layout(width="260px"))
        self.model_picker.add_class("cw-model")
        self.weights_picker = w.ToggleButtons(options=[("official", "official"), ("random", "random")],
                                              tooltips=["ImageNet weights (hub cache or download)",
                                                        "untrained: the architecture alone"])
        self.weights_picker.style.button_width = "84px"
        self.weights_picker.add_class("cw-weights")
        self.model_picker.observe(self._on_model_pick, names="value")
        self.weights_picker.observe(self._on_model_pick, names="value")
        return w.HBox([self.model_picker, self.weights_picker])

    def _image_bar(self, image) -> ImagePicker:
        """The shared picker; ``set_image`` (View's) selects in it, and each pick goes to every view."""
        self.picker = ImagePicker(image, on_error=self.show_error, none_label=EACH_DEFAULT, thumbnail=True)
        self.picker.dropdown.add_class("cw-image")
        self.image = _array(self.picker.value)
        self.picker.observe(self._carry_image, names="value")
        return self.picker

    def _on_model_pick(self, _change) -> None:
        if self._syncing:
            return
        self.clear_error()
        key, weights = self.model_picker.value, self.weights_picker.value
        if self._in_use(key, weights):
            return
        if self._in_flight:  # the pickers are disabled meanwhile; a change made from code waits its turn
            self.ready()
        if key == "user":
            self.set_model(self._user_model)  # already loaded: at once
        else:  # offline without weights, say, the error shows in place and the previous model stays
            self._start_loading(key, None if weights == "random" else "official")

    def _in_use(self, key: str, weights: str) -> bool:
        """Whether the pickers name the model already loaded (the embedded and user models have one weights)."""
        vm = self.model
        if vm is None:
            return False
        if key == "user":
            return vm is self._user_model
        return vm.name == key and (vm.weights not in ("official", "random") or vm.weights == weights)

    def _carry_image(self, change) -> None:
        """Hand the picked image to every view that takes one: the shown one now, the others when next shown
        (hidden views never compute)."""
        self.clear_error()
        with self._lock:
            self.image = _array(change["new"])
            opened = self._opened(lambda tab: tab.uses_image)
            in_place = [name for name in opened if _takes_images(self._views.get(name))]
            self._pending |= set(in_place)
            self._invalidate([name for name in opened if name not in in_place])  # yours without set_image
            if self.current in self._pending:
                self._show_tab(self.current)

    def _sync_model_picker(self) -> None:
        """Make the pickers show the model in use (after a load, or after a failed one), or the one loading
        in the background (then both are disabled)."""
        vm = self.model
        if vm is None or self._in_flight:
            key, kind = self._wanted
        else:
            key, kind = ("user" if vm is self._user_model else vm.name), vm.weights
        options = [("shapes (embedded)", "shapes"), *[(n, n) for n in COURSE_MODELS]]
        if self._user_model is not None:
            options.append((f"{self._user_model.name} (yours)", "user"))
        if key not in {k for _, k in options}:
            options.append((key, key))
        self._syncing = True
        try:
            with self.hold_sync():
                self.model_picker.options = options
                self.model_picker.value = key
                if kind in ("official", "random"):
                    self.weights_picker.value = kind
                self.model_picker.disabled = self._in_flight
                self.weights_picker.disabled = self._in_flight or kind not in ("official", "random")
        finally:
            self._syncing = False
        self._render_status()

    # --- tabs --------------------------------------------------------------------------------
    def _tab_widget(self) -> w.Tab:
        self._panels = {}
        for name in self._names:
            panel = w.VBox([w.HTML(f"<i>{html.escape(name)}: opens when you select this tab</i>")])
            panel.add_class("cw-tab-panel")
            panel.add_class(f"cw-tab-{_slug(name)}")
            self._panels[name] = panel
        tabs = w.Tab(children=[self._panels[n] for n in self._names], titles=self._names, selected_index=0)
        tabs.add_class("cw-tabs")
        tabs.observe(self._on_tab, names="selected_index")
        return tabs

    def _on_tab(self, change) -> None:
        if change["new"] is not None:
            self._show_tab(self._names[change["new"]])

    def _show_tab(self, name: str) -> None:
        with self._lock:
            if self.model is None:  # loading (or the load failed): the tab is built once a model is there
                self._note(name)
            elif name not in self._views or name in self._stale:  # a failed tab is retried when shown again
                self._build(name)
            elif name in self._pending:
                self._pending.discard(name)
                self._in_tab(name, self._views[name].set_image, self.image)
            self._render_status()

    def _note(self, name: str) -> None:
        """The panel of a tab shown before there is a model: loading, or (after a failed load) what to do."""
        if self._load_error:
            text = f"{name} opens once a model has loaded: pick one above"
        else:
            text = f"{name}: loading model {self._wanted[0]}…"
        self._panels[name].children = [w.HTML(f"<i>{html.escape(text)}</i>")]

    def _build(self, name: str) -> None:
        spec = self._tabs[name]
        self._busy(f"building {name}…")
        try:
            view = spec.factory(self.model, self.image if spec.uses_image else None)
        except ImportError as err:  # a view that is not part of this installation
            view = None
            self._errors[name] = f"{name} is not available in this installation ({err})"
        except Exception as err:  # this tab shows why; the other tabs keep working
            view = None
            self._errors[name] = f"{name} could not be shown: {_describe(err)}"
        finally:
            self._busy("")
        self._stale.discard(name)
        self._pending.discard(name)
        old = self._views.pop(name, None)
        if view is None:
            self._panels[name].children = [_error_panel(self._errors[name])]
        else:
            self._errors.pop(name, None)
            self._views[name] = view
            self._panels[name].children = [view]
        _retire(old)

    def _opened(self, depends) -> list[str]:
        """Tabs shown so far (built, or failed to build) whose Tab spec satisfies ``depends``."""
        return [n for n in self._names if (n in self._views or n in self._errors) and depends(self._tabs[n])]

    def _invalidate(self, names) -> None:
        """Rebuild these tabs: the one shown now at once, the others when next shown."""
        self._stale |= set(names)
        if self.current in self._stale:
            self._build(self.current)
        self._render_status()

    def _in_tab(self, name: str, fn, *args) -> None:
        """Run ``fn`` for tab ``name``; an error shows inside that tab (or, for a foreign widget, on our line)."""
        try:
            fn(*args)
        except Exception as err:
            view = self._views.get(name)
            if isinstance(view, View):
                view.show_error(err)
            else:
                self.show_error(f"{name}: {_describe(err)}")

    def _check_tab(self, name: str) -> str:
        if name not in self._tabs:
            raise ValueError(f"no tab named {name!r}; the tabs are {self._names}")
        return name

    # --- status and picture ------------------------------------------------------------------
    def _busy(self, doing: str) -> None:
        self._doing = doing
        self._render_status()

    def _render_status(self) -> None:
        if not hasattr(self, "status"):
            return
        vm = self.model
        if vm is None:
            self.set_status(f"model: {self._wanted[0]} · {self._doing or 'not loaded'}")
            return
        kind = WEIGHT_KINDS.get(vm.weights, vm.weights)
        self.set_status(f"model: {vm.name} · weights: {kind} · device: {vm.device.type} · "
                        f"{self._doing or 'ready'}")

    def snapshot(self) -> np.ndarray:
        """The current tab's picture under a caption naming the tab and the model (for the static PNG)."""
        name = self.current
        view = self._views.get(name)
        picture = None
        if view is not None and name not in self._stale:
            try:
                picture = view.snapshot()
            except Exception as err:  # a broken snapshot must not break the saved notebook
                picture = _text_card([f"{name}: no picture ({_describe(err)})"])
        if picture is None:
            picture = self._placeholder(name)
        vm = self.model
        if vm is not None:
            label = vm.label
        else:
            label = f"{self._wanted[0]} · {'not loaded' if self._load_error else 'loading…'}"
        return _with_caption(np.asarray(picture, dtype=np.uint8), f"{name} · {label}")

    def _placeholder(self, name: str) -> np.ndarray:
        if name in self._errors:
            return _text_card(self._errors[name].splitlines()[:6], color=(176, 0, 32))
        if self.model is None and self._load_error:
            return _text_card(self._load_error.splitlines()[:6], color=(176, 0, 32))
        if self.model is None:
            lines = [f"{name}: loading model {self._wanted[0]}…", "(the tab fills in when it is ready)"]
        else:
            lines = [f"{name}: nothing computed yet", "(run the view to see its result)"]
        if self.image is not None:
            return np.vstack([_fit(self.image, 224), _text_card(lines, width=224)])
        return _text_card(lines)


# --- helpers ---------------------------------------------------------------------------------

NO_MODEL = "no model given; pass 'shapes', a torchvision name such as 'resnet18', or an nn.Module"


def _load(model, weights) -> VisionModel:
    from ..core.models import as_model, load_model  # imports torch: on the loader's thread for a name

    if model is None:
        raise ValueError(NO_MODEL)
    if isinstance(model, str):
        return load_model(model, weights=weights)
    return as_model(model)


def _retire(view) -> None:
    """Stop what a replaced view is running and close its widgets, so it and its model can be freed."""
    if view is None:
        return
    stop = getattr(view, "stop", None) or getattr(view, "_stop", None)
    if callable(stop):
        try:
            stop()
        except Exception:  # the view is going away; nothing to report
            pass
    _close_tree(view)


def _close_tree(widget) -> None:
    """Close a widget and everything inside it (ipywidgets' close() closes only the one widget)."""
    for child in getattr(widget, "children", ()) or ():
        if isinstance(child, w.Widget):
            _close_tree(child)
    if isinstance(widget, w.Widget):
        widget.close()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower())


def _error_panel(text: str) -> w.HTML:
    panel = w.HTML(f'<div style="color:#b00020;white-space:pre-wrap">⚠ {html.escape(text)}</div>')
    panel.add_class("cw-tab-error")
    return panel


def _takes_images(view) -> bool:
    """Whether ``view`` takes a new image in place (our views with a picker; any widget with set_image)."""
    if isinstance(view, View):
        return view.picker is not None or type(view).set_image is not View.set_image
    return callable(getattr(view, "set_image", None))


def _array(image) -> np.ndarray | None:
    return None if image is None else to_array(image)


def _fit(picture: np.ndarray, side: int) -> np.ndarray:
    """Resize so the longer side is ``side`` pixels (nearest for small pictures, keeps them crisp)."""
    img = Image.fromarray(np.asarray(picture, dtype=np.uint8))
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    return np.asarray(img.resize(size, resample=resample))


def _text_card(lines, width: int = 480, color=(40, 40, 40), most: int = 12) -> np.ndarray:
    """Lines of text on a light card, as uint8 (H, W, 3); long lines wrap at the card's width (``most`` rows)."""
    font = ImageFont.load_default()
    rows = [part for line in lines for part in _wrap(line, font, width - 16)][:most]
    img = Image.new("RGB", (width, 16 + 16 * len(rows)), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    for i, row in enumerate(rows):
        draw.text((8, 8 + 16 * i), row, fill=color, font=font)
    return np.asarray(img)


def _wrap(line: str, font, px: float) -> list[str]:
    """``line`` cut at spaces into rows at most ``px`` wide in ``font`` (a longer single word keeps its row)."""
    rows, row = [], ""
    for word in line.split(" "):
        wider = f"{row} {word}" if row else word
        if row and font.getlength(wider) > px:
            rows.append(row)
            wider = word
        row = wider
    return rows + [row]


def _with_caption(picture: np.ndarray, text: str) -> np.ndarray:
    """``picture`` (enlarged to at least 240 px wide) under a one-line caption."""
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)
    if picture.shape[1] < 240:
        picture = _fit(picture, round(240 * max(picture.shape[:2]) / picture.shape[1]))
    caption = _text_card([text], width=picture.shape[1])[:24]
    return np.vstack([caption, picture[..., :3]])
