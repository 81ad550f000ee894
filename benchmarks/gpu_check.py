"""The cuda path: every core method on the GPU gives the CPU's answer, and how fast it is.

Run on a machine with a GPU (no ipywidgets needed): PYTHONPATH=. python benchmarks/gpu_check.py [out.json]
Each method runs on the same inputs on cpu and on cuda; the table shows the largest relative
difference and the median time of 5 runs (after a warm-up) on each device.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch

import cnnviz_widgets as cw


def timed(fn, reps=5, sync=True):
    fn()  # warm-up (cudnn autotune, allocator)
    times = []
    for _ in range(reps):
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def as_array(result):
    if isinstance(result, torch.Tensor):
        return result.detach().float().cpu().numpy()
    for attr in ("heatmap", "values", "map", "image", "pixels", "distances"):
        if hasattr(result, attr):
            return as_array(getattr(result, attr))
    if isinstance(result, tuple) and hasattr(result, "_fields"):
        return as_array(result[0])
    return np.asarray(result, dtype=np.float64)


def rel_diff(a, b):
    a, b = as_array(a), as_array(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def cases(models, images):
    shapes, resnet = models["shapes"], models["resnet18"]
    img, photo = images["shape"], images["photo"]
    gallery = np.random.default_rng(0).standard_normal((20_000, 512)).astype(np.float32)
    query = gallery[:2000] + 0.01
    return {
        "saliency (shapes)": lambda d: cw.saliency(shapes[d], img),
        "guided_backprop (shapes)": lambda d: cw.guided_backprop(shapes[d], img),
        "grad_cam (shapes)": lambda d: cw.grad_cam(shapes[d], img),
        "occlusion (shapes, 64 px)": lambda d: cw.occlusion(shapes[d], img),
        "saliency (resnet18, 224)": lambda d: cw.saliency(resnet[d], photo),
        "grad_cam (resnet18, 224)": lambda d: cw.grad_cam(resnet[d], photo),
        "guided_backprop (resnet18, 224)": lambda d: cw.guided_backprop(resnet[d], photo),
        "occlusion (resnet18, 224, patch 32, stride 8)": lambda d: cw.occlusion(resnet[d], photo, patch=32, stride=8),
        "extract_features (shapes, 512 images)": lambda d: cw.extract_features(shapes[d], images["batch"]),
        "nearest_neighbors (2k x 20k x 512)": lambda d: cw.nearest_neighbors(
            torch.from_numpy(query).to(d), torch.from_numpy(gallery).to(d), k=8),
        "class_visualization (shapes, 20 steps)": lambda d: cw.class_visualization(shapes[d], 0, steps=20),
        "gram_matrix (64x56x56)": lambda d: cw.gram_matrix(torch.randn(64, 56, 56, generator=torch.Generator().manual_seed(0)).to(d)),
    }


def main(out_path=None):
    assert torch.cuda.is_available(), "no cuda device here"
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, {torch.cuda.get_device_name()}")
    devices = ["cpu", "cuda"]
    models = {
        "shapes": {d: cw.load_model("shapes", device=d) for d in devices},
        "resnet18": {d: cw.load_model("resnet18", weights=None, device=d) for d in devices},
    }
    assert cw.default_device().type == "cuda", "default device should be cuda when one is there"
    assert models["shapes"]["cuda"].device.type == "cuda"
    data = cw.make_shapes(512, seed=3)
    images = {"shape": data.images[0], "photo": cw.sample_images()["cat"], "batch": data.images}
    rows = []
    for name, fn in cases(models, images).items():
        try:
            cpu, t_cpu = timed(lambda: fn("cpu"), reps=3)
            gpu, t_gpu = timed(lambda: fn("cuda"))
            diff = rel_diff(gpu, cpu)
            rows.append({"case": name, "rel_diff": diff, "cpu_s": t_cpu, "cuda_s": t_gpu, "ok": diff < 1e-2})
        except Exception as err:  # report every case, do not stop at the first failure
            rows.append({"case": name, "error": f"{type(err).__name__}: {err}"[:300], "ok": False})
        print(rows[-1], flush=True)
    print("\n| case | max rel. diff cuda vs cpu | cpu s | cuda s | speed-up |\n|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | ERROR {r['error']} | | | |")
        else:
            print(f"| {r['case']} | {r['rel_diff']:.1e} | {r['cpu_s']:.4f} | {r['cuda_s']:.4f} | {r['cpu_s'] / r['cuda_s']:.1f}x |")
    if out_path:
        with open(out_path, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
