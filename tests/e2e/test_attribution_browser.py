"""SaliencyExplorer and OcclusionExplorer render in JupyterLab and answer one interaction each.

DOM contract: SaliencyExplorer root ``cw-saliency-explorer`` with ToggleButtons ``cw-method`` and one Image
per method (``cw-map-grad-cam``, ``cw-map-saliency``, ...); OcclusionExplorer root ``cw-occlusion-explorer``
with a ``cw-run`` button and the map Image ``cw-occlusion-map``.  New bytes = a new blob: URL."""
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAL = ".jp-OutputArea .cw-saliency-explorer"
OCC = ".jp-OutputArea .cw-occlusion-explorer"


@pytest.fixture
def notebook(write_notebook):
    return write_notebook("attribution_e2e.ipynb", "import cnnviz_widgets as cw\nmodel = cw.load_model('shapes')",
                          "cw.SaliencyExplorer(model)", "cw.OcclusionExplorer(model)")


def test_attribution_widgets_round_trip(lab, page, page_errors, notebook, open_notebook_in_lab, screenshot,
                                        wait_blob_src, wait_src_changes, lab_hide_code):
    open_notebook_in_lab(page, lab, notebook)
    wait_blob_src(page, f"{SAL} .cw-map-grad-cam")
    # method change: saliency is computed in the kernel and its picture arrives as new bytes
    page.locator(f"{SAL} .cw-method button", has_text="saliency").first.click()
    wait_blob_src(page, f"{SAL} .cw-map-saliency")

    map_sel = f"{OCC} .cw-occlusion-map"
    before = wait_blob_src(page, map_sel)
    page.locator(f"{OCC} .cw-run").first.click()
    wait_src_changes(page, map_sel, before)
    page.wait_for_function("(sel) => document.querySelector(sel)?.textContent.includes('done')",
                           arg=f"{OCC} .cw-status")
    lab_hide_code(page)
    screenshot(page, "attribution-widgets")
    assert page_errors == []
