"""How long until the Dashboard appears: fresh interpreter, ``import cnnviz_widgets`` to the Dashboard
built with its first tab (Filters, embedded shapes model) and its display data (widget JSON + static PNG).

Each repetition is a new subprocess (cold imports, as in a fresh kernel). A: ``cw.Dashboard()``;
B: the single view it opens with, ``cw.FilterGrid(cw.load_model("shapes"))`` -- the difference is what
the Dashboard itself costs. Runs interleave A B A B; medians of >= 5 runs with min and max.

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
import torch, ipywidgets
t2 = time.perf_counter()
widget = {make}
t3 = time.perf_counter()
bundle = widget._repr_mimebundle_()
t4 = time.perf_counter()
assert "image/png" in bundle
print(json.dumps({{"total": t4 - t0, "import": t2 - t0, "build": t3 - t2, "display": t4 - t3,
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
    for key in ("total", "import", "build", "display"):
        values = [r[key] for r in runs]
        cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="empty the page cache before every run (root)")
    args = parser.parse_args()
    env = dict(os.environ, CNNVIZ_OFFLINE="1", TORCH_HOME=tempfile.mkdtemp(prefix="bench-torch-home-"))
    results = {name: [] for name in CASES}
    for _ in range(args.reps):
        for name, make in CASES.items():  # interleaved: A B A B ...
            results[name].append(run_once(make, env, args.cold))
    first = results["A Dashboard()"][0]
    print(f"torch {first['torch']}, torch.get_num_threads()={first['threads']}, os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}, {args.reps} runs each, {'COLD page cache' if args.cold else 'warm page cache'}, "
          "seconds: median (min–max)")
    print("| case | import cw → shown (total) | imports (cw, torch, ipywidgets) | build + first tab | display data |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        print(row(name, runs))


if __name__ == "__main__":
    main()
