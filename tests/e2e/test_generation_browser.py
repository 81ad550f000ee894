"""The gradient-ascent views in JupyterLab: each renders, Run streams at least two frames, Stop stops it.

DOM contract: roots ``cw-ascent-viewer``, ``cw-fooling-explorer``, ``cw-dream-viewer``; inside each an Image
``cw-frame`` (blob: src, a new one per frame), Buttons ``cw-run`` and ``cw-stop``, the status line ``cw-status``."""
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# No run may end by itself before the test has seen two frames and pressed Stop (the status would then say
# "done" or "fooled", not "stopped"): on an idle machine the shapes model runs 1000 steps in 2-4 s and fools
# itself in under a second. So every forward pass takes >= 50 ms (1000 steps >= 50 s), and the fooling target
# can never win: its logit is lowered by 1000 (its gradient, and so every step's visible change, stays the same).
SETUP = """import time
import torch
torch.set_num_threads(1)  # a shared CI box: one thread per kernel
import cnnviz_widgets as cw
model = cw.load_model("shapes")
model.module.register_forward_pre_hook(lambda module, inputs: time.sleep(0.05))
never = cw.FoolingExplorer(model).target
model.module.register_forward_hook(lambda module, inputs, out: out - 1e3 * (torch.arange(out.shape[-1]) == never))"""
VIEWS = {
    "cw-ascent-viewer": "viewer = cw.GradientAscentViewer(model, target='star')\nviewer.steps = 1000\nviewer",
    "cw-fooling-explorer": "fooling = cw.FoolingExplorer(model)\nfooling.target, fooling.steps = never, 1000\nfooling",
    "cw-dream-viewer": "dream = cw.DeepDreamViewer(model)\ndream.octaves, dream.steps = 1, 1000\ndream",
}


@pytest.fixture
def notebook(write_notebook):
    return write_notebook("generation_views.ipynb", SETUP, *VIEWS.values())


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
