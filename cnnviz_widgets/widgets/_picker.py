"""The image picker every image-taking view shares: sample photos, generated shapes, or an upload."""
from __future__ import annotations

import ipywidgets as w
import traitlets as t

from ..core.images import load_image, sample_images

SHAPES_SEED = 4242  # generated picker images: a seed the shapes model never trained on


class ImagePicker(w.HBox):
    """Pick the image: the shipped sample photos, a few generated shapes, or an upload.
    ``value`` is the chosen image (PIL); a bad upload raises a clear ImageError to the owner's guard."""

    value = t.Any(None, help="the chosen image (PIL), or None before the first pick")

    def __init__(self, image=None, on_error=None):
        self._images = {}
        self._on_error = on_error
        self.dropdown = w.Dropdown(options=[], description="image", layout=w.Layout(width="260px"))
        self.dropdown.add_class("cw-image-picker")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
        self.upload.add_class("cw-upload")
        super().__init__([self.dropdown, self.upload])
        self._fill(image)
        self.dropdown.observe(self._picked, names="value")
        self.upload.observe(self._uploaded, names="value")
        self._picked()

    def _fill(self, image) -> None:
        from ..core.shapes import SHAPE_CLASSES, make_shapes

        if image is not None:
            self._images["your image"] = load_image(image)
        shapes = make_shapes(len(SHAPE_CLASSES), seed=SHAPES_SEED)
        for img, label in zip(shapes.images, shapes.labels):
            self._images[f"shape: {SHAPE_CLASSES[int(label)]}"] = load_image(img)
        self._images.update({f"photo: {k}": v for k, v in sample_images().items()})
        self.dropdown.options = list(self._images)
        self.dropdown.value = self.dropdown.options[0]

    def _picked(self, _change=None) -> None:
        self.value = self._images[self.dropdown.value]

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[-1]
        try:
            image = load_image(bytes(item["content"]))
        except ValueError as err:
            if self._on_error is None:
                raise
            self._on_error(f"{item.get('name', 'upload')}: {err}")
            return
        name = f"upload: {item.get('name', 'image')}"
        self._images[name] = image
        self.dropdown.options = list(self._images)
        self.dropdown.value = name

    def default_for(self, model) -> None:
        """Start on a shapes image for the shapes model, on a photo otherwise (unless the user gave one)."""
        if "your image" in self._images:
            return
        prefix = "shape: " if model.name == "shapes" else "photo: "
        self.dropdown.value = next(k for k in self._images if k.startswith(prefix))
