"""Speed of the last-layer tools against their floors and peers, interleaved A B A B in the same run.

    .venv/bin/python benchmarks/bench_last_layer.py                      # everything (t-SNE part is slow)
    .venv/bin/python benchmarks/bench_last_layer.py --only features knn --reps 5
    .venv/bin/python benchmarks/bench_last_layer.py --only frames        # needs playwright + chromium

Rows: median [min, max] seconds over --reps repetitions (answers checked equal before timing).
  features  extract_features vs the bare batched forward (same batches)   target >= 0.90 throughput
  knn       10,000 queries x 50,000 gallery (512-d): ours vs the fastest of three matmul floors vs sklearn brute, faiss
  tsne      10,000 x 512: ours (openTSNE) vs sklearn TSNE default                       target >= 3x
  umap      first vs second start, each a fresh process, sharing a fresh NUMBA_CACHE_DIR
  frames    scatter.js pan/zoom frame time in headless Chromium, 10,000 thumbnails / 100,000 points
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

import cnnviz_widgets as cw
from cnnviz_widgets.core.datasets import thumbnail
from cnnviz_widgets.core.features import input_batches

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(cases: dict, reps: int, warmup: bool = True) -> dict:
    times = {name: [] for name in cases}
    if warmup:
        for fn in cases.values():
            fn()
    for _ in range(reps):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return times


def report(times: dict, base: str | None = None, per: float | None = None) -> None:
    ref = statistics.median(times[base]) if base else None
    for name, ts in times.items():
        med = statistics.median(ts)
        extra = f" | {med / ref:5.2f}x {base}" if ref else ""
        rate = f" | {per / med:9.1f} items/s" if per else ""
        print(f"| {name:<40} | {med:9.4f} | [{min(ts):.4f}, {max(ts):.4f}]{rate}{extra} |", flush=True)


# --- feature extraction ------------------------------------------------------------------------

def bench_features(reps: int) -> None:
    for label, vm, make, n, bs in (
        ("shapes 64px", cw.load_model("shapes", device="cpu"), lambda n: cw.make_shapes(n, 0).images, 2048, 64),
        ("resnet18 (random) 112px", cw.load_model("resnet18", weights=None, device="cpu"), None, 256, 32),
    ):
        if make is None:
            vm.input_size, vm.resize_size = (112, 112), None
            images = np.random.default_rng(0).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
        else:
            images = make(n)
        x = torch.cat(list(input_batches(vm, images, bs)))

        def bare():
            with torch.inference_mode():
                for s in range(0, n, bs):
                    vm.module(x[s:s + bs])

        cases = {f"{label}: bare forward (preprocessed)": bare,
                 f"{label}: extract_features (preprocessed)": lambda: cw.extract_features(vm, x, batch_size=bs),
                 f"{label}: extract_features (uint8 images)": lambda: cw.extract_features(vm, images, batch_size=bs)}
        times = interleaved(cases, reps)
        report(times, base=f"{label}: bare forward (preprocessed)", per=n)


# --- nearest neighbours ------------------------------------------------------------------------

def bench_knn(reps: int, nq: int, ng: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(ng, dim)).astype(np.float32)
    q = rng.normal(size=(nq, dim)).astype(np.float32)
    gt, qt = torch.from_numpy(g), torch.from_numpy(q)
    chunk = max(1, 2**26 // ng)     # 256 MiB of scores per product: the largest products, whole rows
    tiles = -(-ng // 3072)          # equal tiles of ~3,000 gallery items x 1,024 queries: a 12 MiB output
    rows, cols = 1024, -(-ng // (tiles * 32)) * 32                       # that is still in cache when written
    padded = torch.cat([gt, gt.new_zeros(-ng % cols, dim)])
    buffer, tile = torch.empty(chunk, ng), torch.empty(rows, cols)

    def floor_rows():  # the matrix product Q G^T alone, whole gallery rows per product, into one reused buffer
        for s in range(0, nq, chunk):
            part = qt[s:s + chunk]
            torch.mm(part, gt.T, out=buffer[:len(part)])

    def floor_tiles():  # the same product in cache-sized tiles: faster still on this machine
        for s in range(0, nq, rows):
            part = qt[s:s + rows]
            for c in range(0, len(padded), cols):
                torch.mm(part, padded[c:c + cols].T, out=tile[:len(part)])

    threads = torch.get_num_threads()
    streams = [(torch.empty(rows, cols), list(range(s, nq, rows * threads))) for s in range(0, rows * threads, rows)]

    def one_stream(out, starts):
        torch.set_num_threads(1)
        try:
            for s in starts:
                for c in range(0, len(padded), cols):
                    torch.mm(qt[s:s + rows], padded[c:c + cols].T, out=out[:len(qt[s:s + rows])])
        finally:
            torch.set_num_threads(threads)

    def floor_streams():  # the same tiles, one single-threaded stream of query blocks per core
        with ThreadPoolExecutor(threads) as pool:
            for done in [pool.submit(one_stream, *stream) for stream in streams]:
                done.result()

    def addmm():  # ||g||^2 - 2 Q G^T with addmm's bias, fresh output per chunk
        gsq = gt.pow(2).sum(1)
        for s in range(0, nq, chunk):
            torch.addmm(gsq, qt[s:s + chunk], gt.T, alpha=-2)

    from sklearn.neighbors import NearestNeighbors
    sk = NearestNeighbors(n_neighbors=8, algorithm="brute").fit(g)
    ours = cw.nearest_neighbors(q[:200], g, k=8)
    assert (ours.indices == sk.kneighbors(q[:200], return_distance=False)).mean() > 0.999
    cases = {"mm floor, whole rows (256 MiB, reused)": floor_rows,
             "mm floor, tiles (reused)": floor_tiles,
             "mm floor, tiles, one stream per core": floor_streams,
             "chunked addmm (bias, fresh output)": addmm,
             "cw.nearest_neighbors": lambda: cw.nearest_neighbors(qt, gt, k=8),
             "sklearn NearestNeighbors brute": lambda: sk.kneighbors(q)}
    try:
        import faiss
        index = faiss.IndexFlatL2(dim)
        index.add(g)
        assert (index.search(q[:200], 8)[1] == ours.indices).mean() > 0.999
        cases["faiss IndexFlatL2"] = lambda: index.search(q, 8)
    except ImportError:
        print("(faiss not installed: row skipped; pip install -e .[bench])")
    print(f"kNN {nq} queries x {ng} gallery x {dim}-d, k=8")
    times = interleaved(cases, reps)
    floors = [name for name in times if name.startswith("mm floor")]
    report(times, base=min(floors, key=lambda name: statistics.median(times[name])))  # the faster floor


# --- t-SNE -------------------------------------------------------------------------------------

def clustered(n: int, dim: int, classes: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(classes, dim))
    return (centres[np.arange(n) % classes] + rng.normal(size=(n, dim))).astype(np.float32)


def bench_tsne(reps: int, n: int, dim: int) -> None:
    from sklearn.manifold import TSNE
    x = clustered(n, dim)
    cases = {"cw.embed tsne (openTSNE)": lambda: cw.embed(x, "tsne", seed=0),
             "sklearn TSNE default": lambda: TSNE(random_state=0).fit_transform(x)}
    print(f"t-SNE {n} x {dim}")
    report(interleaved(cases, reps, warmup=False), base="cw.embed tsne (openTSNE)")


# --- UMAP cold / warm start --------------------------------------------------------------------

UMAP_CODE = """
import time; t = time.perf_counter()
import numpy as np
from cnnviz_widgets.core.embedding import embed
x = np.random.default_rng(0).normal(size=(2000, 64)).astype("float32")
embed(x, "umap", seed=0)
print(time.perf_counter() - t)
"""


def bench_umap(reps: int) -> None:
    first, second = [], []
    for _ in range(max(1, reps // 2)):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONWARNINGS="ignore")
            run = lambda: float(subprocess.run([sys.executable, "-c", UMAP_CODE], env=env, capture_output=True,
                                               text=True, check=True).stdout.split()[-1])
            first.append(run())
            second.append(run())
    print("UMAP 2000 x 64, fresh process each (import + fit)")
    report({"first start (empty numba cache)": first, "second start (cache filled)": second},
           base="first start (empty numba cache)")


# --- scatter frame time in Chromium ------------------------------------------------------------

PAGE_JS = """
async ([source, points, labels, atlas, thumb, cols, show, frames]) => {
  const b64 = (s) => Uint8Array.from(atob(s), c => c.charCodeAt(0));
  const state = {points: b64(points), labels: b64(labels), atlas: b64(atlas), thumb_size: thumb, atlas_columns: cols,
    show_thumbnails: show, selected: [], view: [], width: 800, height: 600, class_names: ["a","b","c","d","e","f","g","h"],
    colors: ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f"]};
  const model = {get: k => state[k], set: (k, v) => { state[k] = v; }, on() {}, off() {}, save_changes() {}};
  const mod = await import(URL.createObjectURL(new Blob([source], {type: "text/javascript"})));
  const el = document.createElement("div"); document.body.appendChild(el);
  mod.default.render({model, el});
  const s = el.querySelector("canvas").__cwScatter;
  if (show) await new Promise(r => { const w = () => s.atlas ? r() : setTimeout(w, 20); w(); });
  s.frameTimes = [];
  const gaps = [];
  await new Promise(done => {
    let last = null, i = 0;
    const tick = (t) => {
      if (last !== null) gaps.push(t - last);
      last = t;
      if (i % 2) s.panBy(4, 2); else s.zoomAt(400, 300, i < frames / 2 ? 1.02 : 0.98);
      if (++i < frames) requestAnimationFrame(tick); else done();
    };
    requestAnimationFrame(tick);
  });
  const full = [];
  for (let k = 0; k < 10; k++) { const t0 = performance.now(); s.drawFull(); full.push(performance.now() - t0); }
  return {gaps, draws: s.frameTimes.slice(), full};
}
"""


def bench_frames(frames: int) -> None:
    import base64
    from playwright.sync_api import sync_playwright
    from cnnviz_widgets.widgets.scatter import atlas_image, thumb_size

    source = (ROOT / "cnnviz_widgets/widgets/static/scatter.js").read_text()
    shapes = cw.make_shapes(1000, 0).images
    b64 = lambda b: base64.b64encode(b).decode()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
                                    args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.set_content("<html><body></body></html>")
        for n, show in ((10_000, True), (100_000, False)):
            xy = clustered(n, 2, classes=8) * 3
            labels = (np.arange(n) % 8).astype(np.int32)
            atlas, cols, ts = b"", 1, 32
            if show:
                ts = thumb_size(n)
                thumbs = np.stack([thumbnail(shapes[i % 1000], ts) for i in range(n)])
                atlas, cols = atlas_image(thumbs)
            out = page.evaluate(PAGE_JS, [source, b64(xy.astype(np.float32).tobytes()), b64(labels.tobytes()),
                                          b64(atlas), ts, cols, show, frames])
            gaps, draws, full = (np.array(out[k]) for k in ("gaps", "draws", "full"))
            what = f"{n} points, {'thumbnails' if show else 'dots'}"
            print(f"| scatter pan/zoom, {what:<28} | frame interval median {np.median(gaps):6.1f} ms, "
                  f"p95 {np.percentile(gaps, 95):6.1f} ms | draw() median {np.median(draws):6.1f} ms, "
                  f"p95 {np.percentile(draws, 95):6.1f} ms | full redraw at rest median {np.median(full):6.1f} ms "
                  f"| {len(gaps)} frames |", flush=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=["features", "knn", "tsne", "umap", "frames"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tsne-reps", type=int, default=1, help="sklearn's t-SNE on 10,000 points takes minutes")
    parser.add_argument("--knn", nargs=3, type=int, default=[10_000, 50_000, 512], metavar=("Q", "G", "D"))
    parser.add_argument("--tsne", nargs=2, type=int, default=[10_000, 512], metavar=("N", "D"))
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    import sklearn
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} numpy {np.__version__} "
          f"sklearn {sklearn.__version__} python {platform.python_version()} {platform.processor() or platform.machine()} "
          f"cpus={os.cpu_count()}", flush=True)
    print("| case | median s | [min, max] | rate / ratio |")
    if "features" in args.only:
        bench_features(args.reps)
    if "knn" in args.only:
        bench_knn(args.reps, *args.knn)
    if "tsne" in args.only:
        bench_tsne(args.tsne_reps, *args.tsne)
    if "umap" in args.only:
        bench_umap(args.reps)
    if "frames" in args.only:
        bench_frames(args.frames)


if __name__ == "__main__":
    main()
