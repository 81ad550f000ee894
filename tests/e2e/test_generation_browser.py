"""The gradient-ascent views in JupyterLab: each renders, Run streams at least two frames, Stop stops it.

DOM contract: roots ``cw-ascent-viewer``, ``cw-fooling-explorer``, ``cw-dream-viewer``; inside each an Image
``cw-frame`` (blob: src, a new one per frame), Buttons ``cw-run`` and ``cw-stop``, the status line ``cw-status``."""
import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETUP = """import torch
torch.set_num_threads(1)  # a shared CI box: one thread per kernel
import cnnviz_widgets as cw
model = cw.load_model("shapes")"""
VIEWS = {
    "cw-ascent-viewer": "viewer = cw.GradientAscentViewer(model, target='star')\nviewer.steps = 1000\nviewer",
    # a tiny step (0.01 grey level) so that fooling takes longer than the test: Stop has something to stop
    "cw-fooling-explorer": "fooling = cw.FoolingExplorer(model)\nfooling.steps, fooling.lr = 1000, 0.01\nfooling",
    "cw-dream-viewer": "dream = cw.DeepDreamViewer(model)\ndream.octaves, dream.steps = 1, 1000\ndream",
}


@pytest.fixture
def notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(code) for code in VIEWS.values()]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "generation_views.ipynb"
    nbformat.write(nb, path)
    return path


def test_each_view_runs_live_and_stops(lab, page, page_errors, notebook, open_notebook_in_lab, screenshot,
                                        wait_blob_src, wait_src_changes, lab_hide_code):
    open_notebook_in_lab(page, lab, notebook)
    for css in VIEWS:
        root = f".jp-OutputArea .{css}"
        frame = f"{root} .cw-frame"
        src = wait_blob_src(page, frame)
        page.locator(f"{root} .cw-run").first.click()
        for _ in range(2):                                  # at least two frames streamed from the kernel
            src = wait_src_changes(page, frame, src)
        page.locator(f"{root} .cw-stop").first.click()
        page.wait_for_function("(sel) => (document.querySelector(sel)?.textContent || '').includes('stopped')",
                               arg=f"{root} .cw-status")
        page.wait_for_function("(sel) => !document.querySelector(sel)?.disabled", arg=f"{root} .cw-run")
        screenshot(page.locator(root).first, f"generation-{css}")
    lab_hide_code(page)
    assert page_errors == []
