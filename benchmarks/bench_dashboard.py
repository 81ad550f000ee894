"""How long until the Dashboard appears: fresh interpreter, ``import cnnviz_widgets`` to the Dashboard
shown (built, with its display data: widget JSON + static PNG), and to its first tab filled.

``cw.Dashboard()`` shows its shell (pickers, tabs, "loading model…") at once and imports torch and loads the
embedded model on a Job's thread; "first tab filled" is when ``dash.ready()`` returns (the Filters view built).
Each repetition is a new subprocess (cold imports, as in a fresh kernel). A: ``cw.Dashboard()``;
B: the single view it opens with, ``cw.FilterGrid(cw.load_model("shapes"))``, which loads everything before
it is shown (shown = filled). Runs interleave A B A B; medians of >= 5 runs with min and max.

    .venv/bin/python benchmarks/bench_dashboard.py --reps 5
    .venv/bin/python benchmarks/bench_dashboard.py --reps 5 --cold     # as root: page cache emptied first
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, time
t0 = time.perf_counter()
import cnnviz_widgets as cw
t1 = time.perf_counter()
widget = {make}
t2 = time.perf_counter()
bundle = widget._repr_mimebundle_()
t3 = time.perf_counter()
assert "image/png" in bundle
if hasattr(widget, "ready"):
    assert widget.ready(300) and "Filters" in widget.views, widget.error.value
t4 = time.perf_counter()
import torch
print(json.dumps({{"shown": t3 - t0, "filled": t4 - t0, "build": t2 - t1, "display": t3 - t2,
                  "threads": torch.get_num_threads(), "torch": torch.__version__}}))
"""
CASES = {"A Dashboard()": "cw.Dashboard()", "B FilterGrid(shapes)": "cw.FilterGrid(cw.load_model('shapes'))"}


def drop_page_cache() -> bool:
    """Empty the OS page cache (root only), so the next imports read torch's libraries from disk, as the
    first kernel after an install or a reboot does. False where this process may not."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run_once(make: str, env: dict, cold: bool = False) -> dict:
    if cold and not drop_page_cache():
        raise SystemExit("--cold needs root (writes /proc/sys/vm/drop_caches)")
    out = subprocess.run([sys.executable, "-c", CHILD.format(make=make)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(name: str, runs: list[dict]) -> str:
    cells = []
    for key in ("shown", "filled", "build", "display"):
        values = [r[key] for r in runs]
        cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="empty the page cache before every run (root)")
    args = parser.parse_args()
    env = dict(os.environ, CNNVIZ_OFFLINE="1", TORCH_HOME=tempfile.mkdtemp(prefix="bench-torch-home-"))
    load_before = os.getloadavg()[0]  # the machine before our runs (the one after includes them)
    results = {name: [] for name in CASES}
    for _ in range(args.reps):
        for name, make in CASES.items():  # interleaved: A B A B ...
            results[name].append(run_once(make, env, args.cold))
    first = results["A Dashboard()"][0]
    print(f"torch {first['torch']}, torch.get_num_threads()={first['threads']}, os.cpu_count()={os.cpu_count()}, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {args.reps} runs each, {'COLD page cache' if args.cold else 'warm page cache'}, "
          "seconds: median (min–max)")
    print("| case | import cw → shown (display data) | import cw → first tab filled | build (after import cw) "
          "| display data |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        print(row(name, runs))


if __name__ == "__main__":
    main()
