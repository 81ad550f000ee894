"""The Dashboard in JupyterLab and in Voila: every tab renders when first shown, one interaction per
tab reaches the kernel and changes what the tab shows, and the console stays free of errors.

DOM contract relied on (dashboard.py): root ``.cw-dashboard``; the pickers in ``.cw-dashboard-bar``
(image Dropdown ``.cw-image``); tabs are an ipywidgets Tab (lumino tab bar) whose panels carry
``.cw-tab-<slug>``; a built view has class ``cw-view``, a failed one ``cw-tab-error``.
A screenshot of each tab goes to E2E_ARTIFACTS (``dashboard-<frontend>-<slug>.png``); with
CW_SAVE_SCREENSHOTS=1 the JupyterLab ones are also written, shrunk, to notebooks/outputs/dashboard_<slug>.png.
Notebook 7 is not tested here: the ``notebook`` package is not installed in the test environment.
"""
import os
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CELL = "import cnnviz_widgets as cw\ndash = cw.Dashboard()\ndash"
TABS = ["Filters", "Neighbours", "Embedding", "Occlusion", "Saliency", "Gradient ascent", "Fooling",
        "DeepDream", "Style"]
# Tabs whose view takes no image: the interaction is a control of the view itself, "<selector>:<how>"
# (select = choose the next option of the <select> inside it, click = press it, toggle = press the
# ToggleButtons button that is not active).
OWN_CONTROL = {"Filters": ".cw-layer select:select", "Neighbours": ".cw-random:click",
               "Embedding": ".cw-color-by:toggle", "Gradient ascent": ".cw-run:click"}

FINGERPRINT = """(sel) => {
    const root = document.querySelector(sel);
    if (!root) return '';
    const srcs = Array.from(root.querySelectorAll('img')).map(e => e.src);
    const texts = Array.from(root.querySelectorAll('.cw-status, .cw-tab-error')).map(e => e.textContent);
    const plots = Array.from(root.querySelectorAll('.js-plotly-plot .scatterlayer, .cw-canvas, canvas'))
        .map(e => e.innerHTML ? e.innerHTML.length : (e.toDataURL ? e.toDataURL().length : 0));
    return JSON.stringify([srcs, texts, plots]);
}"""


def _slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower())


@pytest.fixture
def dashboard_nb(write_notebook):
    return write_notebook("e2e_dashboard.ipynb", CELL)


def test_dashboard_in_jupyterlab(lab, page, page_errors, dashboard_nb, open_notebook_in_lab, lab_hide_code,
                                 e2e_artifacts):
    open_notebook_in_lab(page, lab, dashboard_nb)
    page.locator(".jp-OutputArea .cw-dashboard .cw-tab-filters .cw-view").wait_for()
    lab_hide_code(page)
    _every_tab(page, ".jp-OutputArea .cw-dashboard", "lab", e2e_artifacts)
    assert page_errors == []


def test_dashboard_in_voila(voila_server, page, page_errors, dashboard_nb, open_notebook_in_voila, e2e_artifacts):
    open_notebook_in_voila(page, voila_server, dashboard_nb)
    _every_tab(page, ".cw-dashboard", "voila", e2e_artifacts)
    assert page_errors == []


def _every_tab(page, root, frontend, artifacts):
    page.locator(f"{root} .cw-tab-filters .cw-view").wait_for()
    for name in TABS:
        panel = f"{root} .cw-tab-{_slug(name)}"
        page.locator(f"{root} .lm-TabBar-tab").filter(has_text=name).first.click()
        page.locator(f"{panel} .cw-view, {panel} .cw-tab-error").first.wait_for()
        assert page.locator(f"{panel} .cw-tab-error").count() == 0, page.locator(panel).inner_text()
        before = _settled(page, panel)
        _interact(page, root, panel, name)
        page.wait_for_function(f"([sel, old]) => ({FINGERPRINT})(sel) !== old", arg=[panel, before])
        _settled(page, panel)
        _save(page.locator(root).first, artifacts, frontend, name)


def _interact(page, root, panel, name):
    """One user action that only the kernel can answer with new pixels or a new status."""
    how = OWN_CONTROL.get(name)
    if how is None:  # views that take an image: choose, in the dashboard's shared picker, one the view lacks
        shared = page.locator(f"{root} .cw-dashboard-bar .cw-image select").first
        own = page.locator(f"{panel} .cw-image-picker select").first
        shown = {_chosen(shared), _chosen(own), "each view's default"}
        labels = [o.inner_text() for o in shared.locator("option").all()]
        shared.select_option(label=next(label for label in labels if label not in shown))
        return
    selector, action = how.rsplit(":", 1)
    control = page.locator(f"{panel} {selector}").first
    if action == "select":
        _next_option(control)
    elif action == "toggle":
        control.locator("button:not(.mod-active)").first.click()
    else:
        control.click()


def _chosen(select) -> str:
    return select.evaluate("s => s.options[s.selectedIndex].text")


def _next_option(select):
    values = [o.get_attribute("value") for o in select.locator("option").all()]
    assert len(values) >= 2, "a picker with fewer than two choices"
    current = select.input_value()
    select.select_option(value=values[(values.index(current) + 1) % len(values)])


def _settled(page, panel, quiet_s=1.0, limit_s=60.0):
    """The panel's fingerprint once it has stopped changing for ``quiet_s`` (views may still stream)."""
    last = page.evaluate(FINGERPRINT, panel)
    quiet_since, deadline = time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        now = page.evaluate(FINGERPRINT, panel)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
    return last


def _save(locator, artifacts, frontend, name):
    path = Path(artifacts) / f"dashboard-{frontend}-{_slug(name)}.png"
    locator.screenshot(path=str(path))
    if frontend == "lab" and os.environ.get("CW_SAVE_SCREENSHOTS") == "1":
        from PIL import Image

        out = REPO / "notebooks" / "outputs" / f"dashboard_{_slug(name).replace('-', '_')}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.open(path).convert("RGB")
        picture.thumbnail((720, 720))
        picture.quantize(colors=128).save(out, optimize=True)
