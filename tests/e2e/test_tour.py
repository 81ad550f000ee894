"""The tour notebook runs in JupyterLab, the FilterGrid renders, and choosing another
layer makes a kernel round trip.

DOM contract relied on (FilterGrid): root has class ``cw-filter-grid``; inside it an
ipywidgets Image with class ``cw-grid-image`` (``src`` is a blob: URL, a new one per
value), a Dropdown with class ``cw-layer`` (a ``<select>`` inside), and a Label/HTML
with class ``cw-status`` whose text changes after each update."""
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOUR = Path(__file__).resolve().parents[2] / "notebooks" / "00_tour.ipynb"
ROOT = ".jp-OutputArea .cw-filter-grid"


def test_tour_filter_grid_round_trip(lab, page, page_errors, open_notebook_in_lab, screenshot,
                                     wait_blob_src, wait_src_changes, lab_hide_code):
    assert TOUR.exists(), TOUR
    open_notebook_in_lab(page, lab, TOUR)

    image_sel = f"{ROOT} .cw-grid-image"
    src0 = wait_blob_src(page, image_sel)
    status = page.locator(f"{ROOT} .cw-status").first
    status0 = status.text_content()

    select = page.locator(f"{ROOT} .cw-layer select").first
    options = select.locator("option")
    assert options.count() >= 2, "FilterGrid offers fewer than two layers"
    current = select.input_value()
    target = next(v for v in (options.nth(i).get_attribute("value") for i in range(options.count()))
                  if v != current)
    select.select_option(value=target)

    # Round trip: only the Python side can send new image bytes (a new blob: URL).
    wait_src_changes(page, image_sel, src0)
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel)?.textContent !== old",
        arg=[f"{ROOT} .cw-status", status0],
    )
    lab_hide_code(page)
    screenshot(page.locator(ROOT).first, "tour-filter-grid")
    assert page_errors == []
