"""EmbeddingScatter in JupyterLab: thumbnails load, hovering shows a thumbnail card, and clicking a point
sends the selection to Python (an observer writes it into a Label with class ``cw-status``).

DOM contract (scatter.js): ``.cw-scatter-canvas`` (its ``__cwScatter`` handle gives ``screenOf(i)``),
root ``.cw-scatter-root`` with ``data-atlas="loaded"`` once the atlas image decoded, and
``data-hover`` = the hovered point's index; the hover card is ``.cw-scatter-tip``."""
import nbformat
import pytest

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


def test_scatter_thumbnails_hover_and_click_reach_python(tmp_path, lab, page, page_errors, open_notebook_in_lab,
                                                         screenshot, lab_hide_code):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE)], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = tmp_path / "scatter_e2e.ipynb"
    nbformat.write(nb, path)
    open_notebook_in_lab(page, lab, path)

    root = ".jp-OutputArea .cw-scatter-root"
    page.wait_for_selector(f'{root}[data-atlas="loaded"]')
    lab_hide_code(page)
    canvas = page.locator(".jp-OutputArea .cw-scatter-canvas").first
    canvas.scroll_into_view_if_needed()
    point = canvas.evaluate("c => c.__cwScatter.screenOf(17)")

    page.mouse.move(point["x"], point["y"])  # hover: the card shows that point's thumbnail
    page.wait_for_function("sel => document.querySelector(sel).dataset.hover !== ''", arg=root)
    assert page.locator(f"{root} .cw-scatter-tip").first.is_visible()

    hovered = int(page.locator(root).first.get_attribute("data-hover"))
    page.mouse.click(point["x"], point["y"])  # click: selection goes to Python, Python updates the Label
    page.wait_for_function(
        "text => [...document.querySelectorAll('.cw-echo')].some(e => e.textContent.includes(text))",
        arg=f"selected: [{hovered}]",
    )
    screenshot(page, "scatter-selected")
    assert page_errors == []
