"""EmbeddingScatter in JupyterLab: thumbnails load, hovering shows a thumbnail card, clicking a point, a
shift-drag box and a shift-drag lasso send the selection to Python (observers write it into Labels).

DOM contract (scatter.js): ``.cw-scatter-canvas`` (its ``__cwScatter`` handle gives ``screenOf(i)``, ``view``
= {cx, cy, scale} and ``w``, ``h``), root ``.cw-scatter-root`` with ``data-atlas="loaded"`` once the atlas
image decoded, and ``data-hover`` = the hovered point's index; the hover card is ``.cw-scatter-tip``, the
lasso outline ``.cw-scatter-lasso polygon``; the box / lasso toggle is ``.cw-select-mode``."""
import numpy as np
import pytest
from matplotlib.path import Path as Polygon

import cnnviz_widgets as cw

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CODE = """
import ipywidgets as w
import cnnviz_widgets as cw
model = cw.load_model("shapes", device="cpu")
data = cw.image_dataset("shapes", n=120, seed=5)
scatter = cw.EmbeddingScatter(cw.extract_features(model, data), images=data, width=500, height=400)
echo = w.Label("selected: none")
echo.add_class("cw-status")
echo.add_class("cw-echo")
scatter.observe(lambda c: setattr(echo, "value", f"selected: {c.new}"), names="selected")
display(w.VBox([scatter, echo]))
"""

# An 11 x 9 grid of 2-D "features", 1 apart: its PCA layout is the grid itself, centred (x in -5..5, y in -4..4),
# so every point is at least half a unit (about 22 px here) from the edges of the shapes drawn below.
GRID_CODE = """
import ipywidgets as w
import numpy as np
import cnnviz_widgets as cw
grid = np.stack(np.meshgrid(np.arange(11.0), np.arange(9.0)), -1).reshape(-1, 2).astype(np.float32)
scatter = cw.EmbeddingScatter(grid, width=500, height=400)
echo = w.Label("none")
echo.add_class("cw-echo")
def show(_change=None):
    echo.value = f"{scatter.select_mode}: {sorted(scatter.selected)}"
scatter.observe(show, names=["selected", "select_mode"])
display(w.VBox([scatter, echo]))
"""
GRID = np.stack(np.meshgrid(np.arange(11.0), np.arange(9.0)), -1).reshape(-1, 2).astype(np.float32)
# A "U": the 3 x 4 points in its notch lie inside the bounding box but outside the polygon.
U_SHAPE = [(-4.5, -3.5), (4.5, -3.5), (4.5, 3.5), (1.5, 3.5), (1.5, -0.5), (-1.5, -0.5), (-1.5, 3.5), (-4.5, 3.5)]


def _open(write_notebook, lab, page, open_notebook_in_lab, lab_hide_code, code, name):
    open_notebook_in_lab(page, lab, write_notebook(name, code))
    canvas = page.locator(".jp-OutputArea .cw-scatter-canvas").first
    canvas.wait_for()
    lab_hide_code(page)
    return canvas


def test_scatter_thumbnails_hover_and_click_reach_python(write_notebook, lab, page, page_errors, open_notebook_in_lab,
                                                         screenshot, lab_hide_code):
    canvas = _open(write_notebook, lab, page, open_notebook_in_lab, lab_hide_code, CODE, "scatter_e2e.ipynb")
    root = ".jp-OutputArea .cw-scatter-root"
    page.wait_for_selector(f'{root}[data-atlas="loaded"]')
    canvas.scroll_into_view_if_needed()
    point = canvas.evaluate("c => c.__cwScatter.screenOf(17)")

    page.mouse.move(point["x"], point["y"])  # hover: the card shows that point's thumbnail
    page.wait_for_function("sel => document.querySelector(sel).dataset.hover !== ''", arg=root)
    assert page.locator(f"{root} .cw-scatter-tip").first.is_visible()

    hovered = int(page.locator(root).first.get_attribute("data-hover"))
    page.mouse.click(point["x"], point["y"])  # click: selection goes to Python, Python updates the Label
    _wait_echo(page, f"selected: [{hovered}]")
    screenshot(page, "scatter-selected")
    assert page_errors == []


def test_scatter_lasso_and_box_selections_reach_python(write_notebook, lab, page, page_errors, open_notebook_in_lab,
                                                       screenshot, lab_hide_code):
    layout = cw.embed(GRID, "pca")  # what the widget sends to the browser
    np.testing.assert_allclose(layout, GRID - GRID.mean(0), atol=1e-4)
    canvas = _open(write_notebook, lab, page, open_notebook_in_lab, lab_hide_code, GRID_CODE, "scatter_lasso.ipynb")
    canvas.evaluate("c => new Promise(done => { const wait = () => c.__cwScatter.n === 99 ? done() : "
                    "setTimeout(wait, 50); wait(); })")

    box = [(-4.5, -3.5), (-0.5, 0.5)]  # data corners: a 4 x 4 block of points
    chosen = _shift_drag(page, canvas, box, steps=8)
    box_set = _in_box(layout, *chosen)
    assert len(box_set) == 16
    _wait_echo(page, f"box: {box_set}")

    page.locator(".jp-OutputArea .cw-select-mode button", has_text="lasso").click()
    _wait_echo(page, f"lasso: {box_set}")  # Python's selection survives the switch ...
    assert canvas.evaluate("c => c.__cwScatter.selected.size") == 16  # ... and so does the browser's

    drawn = _shift_drag(page, canvas, U_SHAPE + U_SHAPE[:1], steps=10,
                        before_up=lambda: _assert_lasso_drawn(page, screenshot))
    lasso_set = sorted(np.flatnonzero(Polygon(drawn).contains_points(layout)).tolist())
    bbox = np.all((layout >= np.min(drawn, 0)) & (layout <= np.max(drawn, 0)), 1)
    assert len(lasso_set) == 51 and bbox.sum() - len(lasso_set) == 12  # 12 points in the notch: in the box, not the U
    _wait_echo(page, f"lasso: {lasso_set}")
    assert page.locator(".jp-OutputArea .cw-scatter-lasso").first.is_hidden()  # the outline goes at mouse-up
    screenshot(page, "scatter-lasso")

    page.locator(".jp-OutputArea .cw-select-mode button", has_text="box").click()
    _wait_echo(page, f"box: {lasso_set}")
    chosen = _shift_drag(page, canvas, [(0.5, -1.5), (4.5, 2.5)], steps=8)  # box works again after the switch
    _wait_echo(page, f"box: {_in_box(layout, *chosen)}")

    before = canvas.evaluate("c => c.__cwScatter.view.cx")
    _drag(page, _to_page(_transform(canvas), [(0, 0), (-1, 0)]), steps=6)  # plain drag still pans
    assert canvas.evaluate("c => c.__cwScatter.view.cx") == pytest.approx(before + 1, abs=0.05)
    assert page_errors == []


# --- helpers ----------------------------------------------------------------------------------

def _wait_echo(page, text):
    page.wait_for_function(
        "text => [...document.querySelectorAll('.cw-echo')].some(e => e.textContent === text)", arg=text)


def _transform(canvas):
    """The canvas' data -> page transform (after scrolling it into view, as the mouse will see it)."""
    canvas.scroll_into_view_if_needed()
    return canvas.evaluate("c => { const s = c.__cwScatter, r = c.getBoundingClientRect();"
                           " return {...s.view, w: s.w, h: s.h, left: r.left + c.clientLeft, top: r.top + c.clientTop}; }")


def _to_page(v, points):  # whole pixels, as the mouse events will carry them
    return [(round(v["left"] + v["w"] / 2 + (x - v["cx"]) * v["scale"]),
             round(v["top"] + v["h"] / 2 - (y - v["cy"]) * v["scale"])) for x, y in points]


def _to_data(v, points):
    return [((px - v["left"] - v["w"] / 2) / v["scale"] + v["cx"], v["cy"] - (py - v["top"] - v["h"] / 2) / v["scale"])
            for px, py in points]


def _shift_drag(page, canvas, points, steps, before_up=None):
    """Shift-drag through ``points`` (data space); returns the path the mouse took, back in data space."""
    v = _transform(canvas)
    path = _to_page(v, points)
    page.keyboard.down("Shift")
    _drag(page, path, steps, before_up)
    page.keyboard.up("Shift")
    return _to_data(v, path)


def _drag(page, path, steps, before_up=None):
    page.mouse.move(*path[0])
    page.mouse.down()
    for p in path[1:]:
        page.mouse.move(*p, steps=steps)
    if before_up:
        before_up()
    page.mouse.up()


def _assert_lasso_drawn(page, screenshot):
    outline = page.locator(".jp-OutputArea .cw-scatter-lasso").first
    assert outline.is_visible()
    assert len(outline.locator("polygon").get_attribute("points").split()) > 20  # followed the mouse
    screenshot(page, "scatter-lasso-drawing")


def _in_box(layout, a, b):
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return sorted(np.flatnonzero(np.all((layout >= lo) & (layout <= hi), 1)).tolist())
