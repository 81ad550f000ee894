"""Self-test of the browser harness (conftest.py): a tiny generated notebook with an
IntSlider, an Image and a Label renders in JupyterLab and in Voila, and moving the
slider makes a kernel round trip (the Label and the Image are set from Python)."""
import pytest

pytestmark = pytest.mark.browser

CELL = '''\
import io
import ipywidgets as w
from PIL import Image as PILImage

def png_for(v):
    buf = io.BytesIO()
    PILImage.new("RGB", (48, 48), ((v * 40) % 256, 128, 255 - (v * 40) % 256)).save(buf, format="PNG")
    return buf.getvalue()

slider = w.IntSlider(value=0, min=0, max=10, description="level")
img = w.Image(value=png_for(0), format="png", width=96, height=96)
status = w.Label(value="value=0")

def on_change(change):
    img.value = png_for(change["new"])
    status.value = f"value={change['new']}"

slider.observe(on_change, names="value")
slider.add_class("e2e-slider"); img.add_class("e2e-image"); status.add_class("e2e-status")
w.VBox([slider, img, status])'''


@pytest.fixture
def harness_nb(write_notebook):
    return write_notebook("e2e_harness.ipynb", CELL)


def _round_trip(page, scope, steps, wait_blob_src, wait_src_changes):
    page.locator(f"{scope} .widget-slider.e2e-slider").wait_for()
    status = page.locator(f"{scope} .e2e-status")
    assert status.inner_text() == "value=0"
    src0 = wait_blob_src(page, f"{scope} .e2e-image")
    page.locator(f"{scope} .e2e-slider .noUi-handle").focus()
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([sel, t]) => document.querySelector(sel)?.textContent === t",
        arg=[f"{scope} .e2e-status", f"value={steps}"],
    )
    wait_src_changes(page, f"{scope} .e2e-image", src0)


def test_harness_jupyterlab(lab, page, page_errors, harness_nb, open_notebook_in_lab,
                            screenshot, wait_blob_src, wait_src_changes):
    open_notebook_in_lab(page, lab, harness_nb)
    _round_trip(page, ".jp-OutputArea", 3, wait_blob_src, wait_src_changes)
    screenshot(page, "harness-jupyterlab")
    assert page_errors == []


def test_harness_voila(voila_server, page, page_errors, harness_nb, open_notebook_in_voila,
                       screenshot, wait_blob_src, wait_src_changes):
    open_notebook_in_voila(page, voila_server, harness_nb)
    _round_trip(page, "body", 5, wait_blob_src, wait_src_changes)
    screenshot(page, "harness-voila")
    assert page_errors == []
