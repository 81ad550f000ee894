"""StyleTransferViewer and GramMatrixView render in JupyterLab; Run streams frames, Stop stops.

DOM contract: StyleTransferViewer root ``cw-style-viewer`` with buttons ``cw-run`` / ``cw-stop``, the live
frame Image ``cw-frame`` (a new blob: URL per frame) and the status line ``cw-status``; GramMatrixView root
``cw-gram-view`` with the Gram heatmap Images ``cw-gram-a`` / ``cw-gram-b``."""
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STYLE = ".jp-OutputArea .cw-style-viewer"
GRAM = ".jp-OutputArea .cw-gram-view"


@pytest.fixture
def notebook(write_notebook):
    return write_notebook("style_e2e.ipynb", "import cnnviz_widgets as cw\nmodel = cw.load_model('shapes')",
                          "view = cw.StyleTransferViewer(model=model)\nview.size, view.steps = 64, 1000\nview",
                          "cw.GramMatrixView(model)")


def test_style_viewer_runs_and_stops(lab, page, page_errors, notebook, open_notebook_in_lab, screenshot,
                                     wait_blob_src, wait_src_changes, lab_hide_code):
    open_notebook_in_lab(page, lab, notebook)
    wait_blob_src(page, f"{GRAM} .cw-gram-a")
    wait_blob_src(page, f"{STYLE} .cw-inputs")
    status = f"{STYLE} > .cw-status"

    page.locator(f"{STYLE} .cw-run").first.click()
    frame = page.locator(f"{STYLE} .cw-frame").first
    page.wait_for_function("(sel) => (document.querySelector(sel)?.src || '').startsWith('blob:')",
                           arg=f"{STYLE} .cw-frame")
    first = frame.get_attribute("src")
    wait_src_changes(page, f"{STYLE} .cw-frame", first)            # a second frame: it streams
    page.wait_for_function("(sel) => /step \\d+\\/1000/.test(document.querySelector(sel)?.textContent || '')",
                           arg=status)

    page.locator(f"{STYLE} .cw-stop").first.click()
    page.wait_for_function("(sel) => (document.querySelector(sel)?.textContent || '').includes('stopped at')",
                           arg=status, timeout=15_000)
    assert frame.get_attribute("src", timeout=5_000).startswith("blob:")   # the picture is kept
    lab_hide_code(page)
    page.locator(STYLE).first.scroll_into_view_if_needed()
    screenshot(page, "style-viewer")
    assert page_errors == []
