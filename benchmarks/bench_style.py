"""Style transfer speed and the offline default model, on this CPU.

1. steps/s at SIZE x SIZE (default 256) for Adam and L-BFGS (one evaluation per step):
   A = the package (cw.core.style.transfer_ascent -> the shared Ascent loop, capture hooks, trunk cut),
   B = a straightforward hand-written Gatys loop over the same truncated VGG with the same losses
       (benchmarks/_handwritten.py). Interleaved A B A B, medians of --reps runs with min and max.
2. time to a recognisable stylization: L-BFGS steps until the style loss is <= 10% of its start
   (cat painted with gravel), and the picture (notebooks/outputs/style_transfer_<size>.png).
3. offline default study: texture synthesis of the gravel sample with each candidate (random-weight VGG-16
   conv trunk, seed 0, vs the embedded shapes model); each result judged by BOTH models' style losses
   (lower = closer texture; mid-gray noise as the reference) -> notebooks/outputs/texture_candidates.png.

    .venv/bin/python benchmarks/bench_style.py --reps 5 --size 256 --steps 3
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("CNNVIZ_OFFLINE", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import cnnviz_widgets as cw  # noqa: E402
from cnnviz_widgets.core import style as S  # noqa: E402
from cnnviz_widgets.core.render import encode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _handwritten as H  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "outputs"


def ours(setup, optimizer: str, steps: int) -> float:
    t = time.perf_counter()
    for _ in S.transfer_ascent(setup, optimizer=optimizer, steps=steps).steps():
        pass
    return steps / (time.perf_counter() - t)


def handwritten(setup, optimizer: str, steps: int) -> float:
    vm = setup.model
    content_layer, style_layers = S.default_layers(vm)
    seq = S.trunk(vm, [*style_layers, content_layer]).module.features
    mean, std = torch.tensor(vm.mean).view(1, 3, 1, 1), torch.tensor(vm.std).view(1, 3, 1, 1)
    for p in seq.parameters():
        p.requires_grad_(False)
    t = time.perf_counter()
    loss = H.make_loss(seq, mean, std, setup.content, setup.style, content_layer, style_layers, 1.0, 10.0, 1e-3)
    H.run(loss, setup.content, steps, optimizer, lr=S.LR[optimizer])
    return steps / (time.perf_counter() - t)


def speed(setup, reps: int, steps: int) -> None:
    print(f"\n## steps/s at {tuple(setup.content.shape[-2:])} (A = package, B = hand-written), {steps} steps per run")
    print("| optimizer | A median (min-max) | B median (min-max) | A/B |")
    print("|---|---|---|---|")
    for optimizer in ("adam", "lbfgs"):
        ours(setup, optimizer, 1)  # untimed: torch.optim's first step imports torch._dynamo (~1 s), a one-off
        handwritten(setup, optimizer, 1)
        a, b = [], []
        for _ in range(reps):  # interleaved A B A B
            a.append(ours(setup, optimizer, steps))
            b.append(handwritten(setup, optimizer, steps))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {optimizer} | {ma:.3f} ({min(a):.3f}-{max(a):.3f}) | {mb:.3f} ({min(b):.3f}-{max(b):.3f}) | {ma / mb:.2f} |",
              f"load {os.getloadavg()[0]:.2f}", flush=True)


def time_to_stylization(setup, max_steps: int) -> None:
    t0 = time.perf_counter()
    first = last = None
    for step in S.transfer_ascent(setup, optimizer="lbfgs", steps=max_steps).steps():
        losses = S.step_losses(step)
        first = first or losses
        last = step
        if losses["style"] <= 0.1 * first["style"]:
            break
    dt = time.perf_counter() - t0
    end = S.step_losses(last)
    print(f"\n## time to a recognisable stylization (style loss <= 10% of start), L-BFGS, {tuple(setup.content.shape[-2:])}")
    print(f"steps {last.index + 1}, {dt:.1f} s; style {first['style']:.3f} -> {end['style']:.4f}, content {end['content']:.3f}")
    side = [_u8(setup.content), _u8(setup.style), last.image()]
    _save(np.concatenate(side, axis=1), f"style_transfer_{setup.content.shape[-1]}.png")


def study(size: int, steps: int) -> None:
    gravel = cw.sample_images()["gravel"]
    cands = {"vgg16 random (seed 0)": S.style_model("vgg16")[0], "shapes (embedded)": cw.load_model("shapes", device="cpu")}
    results, setups = {}, {}
    for name, vm in cands.items():
        setups[name] = S.prepare_style(None, gravel, vm, size)
        t = time.perf_counter()
        last = None
        for last in S.texture_ascent(setups[name], steps=steps, optimizer="lbfgs").steps():
            pass
        results[name] = last.pixels
        print(f"{name}: {steps} L-BFGS steps in {time.perf_counter() - t:.1f} s", flush=True)
    gen = torch.Generator().manual_seed(0)
    noise = 0.4 + 0.2 * torch.rand(1, 3, *results[next(iter(results))].shape[-2:], generator=gen)
    print(f"\n## offline default study: gravel texture at {size}px, {steps} steps; style loss under each judge")
    print("| judge \\ made by | noise | " + " | ".join(results) + " |")
    print("|---|---|" + "---|" * len(results))
    for judge, vm in cands.items():
        row = [_judge(setups[judge], vm, noise)] + [_judge(setups[judge], vm, px) for px in results.values()]
        print(f"| {judge} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    _save(np.concatenate([_u8(setups[next(iter(setups))].style)] + [_u8(p) for p in results.values()], 1),
          "texture_candidates.png")


def _judge(setup, vm, pixels) -> float:
    content, style = S.default_layers(vm)
    feats = S._features(vm, setup.style, style)
    got = S._features(vm, pixels, style)
    return float(sum(S.style_loss(got[k], S.gram_matrix(feats[k])) for k in style) / len(style))


def _square(pil):
    side = min(pil.size)
    left, top = (pil.width - side) // 2, (pil.height - side) // 2
    return pil.crop((left, top, left + side, top + side))


def _u8(pixels) -> np.ndarray:
    return pixels[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def _save(picture: np.ndarray, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_bytes(encode(picture))
    print(f"picture: {OUT / name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed run")
    ap.add_argument("--stylize-size", type=int, default=128)
    ap.add_argument("--study-size", type=int, default=96)
    ap.add_argument("--study-steps", type=int, default=40)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: speed,stylize,study")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
    imgs = cw.sample_images()
    if "speed" not in skip:
        speed(S.prepare_style(_square(imgs["cat"]), imgs["gravel"], "vgg16", args.size), args.reps, args.steps)
    if "stylize" not in skip:
        time_to_stylization(S.prepare_style(imgs["cat"], imgs["gravel"], "vgg16", args.stylize_size), 200)
    if "study" not in skip:
        study(args.study_size, args.study_steps)


if __name__ == "__main__":
    main()
