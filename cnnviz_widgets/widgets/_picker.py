"""The image picker every image-taking view (and the Dashboard) shares: sample photos, generated shapes, or
an upload; ``show(image)`` selects an image from code, which is how ``View.set_image`` reaches a view."""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import traitlets as t
from PIL import Image

from ..core.images import load_image, sample_images
from ..core.render import encode

SHAPES_SEED = 4242  # generated picker images: a seed the shapes model never trained on
YOURS = "your image"
THUMB_PX = 40


class ImagePicker(w.HBox):
    """Pick the image: the shipped sample photos, a few generated shapes, or an upload.
    ``value`` is the chosen image (PIL); a bad upload raises a clear ImageError to the owner's guard.

    ``default`` names the entry shown first (and by ``show(None)``); ``none_label`` adds an entry whose value
    is None (the Dashboard's "each view's default"); ``thumbnail`` adds a small picture of the choice.
    """

    value = t.Any(None, help="the chosen image (PIL), or None before the first pick or for the none entry")

    def __init__(self, image=None, on_error=None, default: str | None = None, none_label: str | None = None,
                 thumbnail: bool = False):
        self._images = {}
        self._on_error = on_error
        self.dropdown = w.Dropdown(options=[], description="image", layout=w.Layout(width="260px"))
        self.dropdown.add_class("cw-image-picker")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.upload.add_class("cw-upload")
        self.thumb = w.Image(format="png", layout=w.Layout(width=f"{THUMB_PX}px", height=f"{THUMB_PX}px"))
        self.thumb.add_class("cw-image-thumb")
        super().__init__([self.dropdown, self.upload, *([self.thumb] if thumbnail else [])])
        self._muted = False
        self._fill(image, none_label)
        self._default = default or next(key for key in self._images if key != YOURS)
        self.dropdown.value = YOURS if image is not None else self._default
        self.dropdown.observe(self._picked, names="value")
        self.upload.observe(self._uploaded, names="value")
        self._picked()

    def _fill(self, image, none_label) -> None:
        from ..core.shapes import SHAPE_CLASSES, make_shapes

        if none_label is not None:
            self._images[none_label] = None
        if image is not None:
            self._images[YOURS] = load_image(image)
        shapes = make_shapes(len(SHAPE_CLASSES), seed=SHAPES_SEED)
        for img, label in zip(shapes.images, shapes.labels):
            self._images[f"shape: {SHAPE_CLASSES[int(label)]}"] = load_image(img)
        self._images.update({f"photo: {k}": v for k, v in sample_images().items()})
        self.dropdown.options = list(self._images)

    def _picked(self, _change=None) -> None:
        if self._muted:
            return
        self.value = self._images[self.dropdown.value]
        if self.thumb in self.children:
            self.thumb.value = _thumbnail(self.value)

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[-1]
        self.upload.value = ()  # the bytes live on in the dropdown; the same file can be uploaded again
        try:
            image = load_image(bytes(item["content"]))
        except ValueError as err:
            if self._on_error is None:
                raise
            self._on_error(f"{item.get('name', 'upload')}: {err}")
            return
        self._select(f"upload: {item.get('name', 'image')}", image)

    def show(self, image) -> None:
        """Select ``image`` (anything ``cw.load_image`` takes; None: the default entry), as if picked by hand:
        an entry holding the same pixels is selected, else the image becomes "your image".
        A bad image raises ImageError and changes nothing."""
        if image is None:
            self.dropdown.value = self._default
            return
        image = load_image(image)
        key = self._holding(image)
        if key is None:
            self._select(YOURS, image)
        else:
            self._select(key)  # the entry keeps its own image object: an equal pick is no change

    def _holding(self, image) -> str | None:
        """The entry whose image has these pixels, if any."""
        pixels = image.tobytes()
        return next((key for key, have in self._images.items()
                     if have is not None and have.size == image.size and have.tobytes() == pixels), None)

    def _select(self, key: str, image=None) -> None:
        """Select entry ``key`` (storing ``image`` under it first, when given); ``value`` changes once."""
        if image is not None:
            self._images[key] = image
        self._muted = True  # a new options list selects its first entry for a moment: not a pick
        try:
            self.dropdown.options = list(self._images)
            self.dropdown.value = key
        finally:
            self._muted = False
        self._picked()

    def default_for(self, model) -> None:
        """Start on a shapes image for the shapes model, on a photo otherwise (unless the user gave one)."""
        prefix = "shape: " if model.name == "shapes" else "photo: "
        self._default = next(k for k in self._images if k.startswith(prefix))
        if YOURS not in self._images:
            self.dropdown.value = self._default


def _thumbnail(image) -> bytes:
    """A small PNG of the choice (a light square for no image)."""
    if image is None:
        return encode(np.full((8, 8, 3), 235, np.uint8))
    scale = THUMB_PX / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
    return encode(np.asarray(image.resize(size, resample=resample)))
