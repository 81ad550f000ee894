"""What the live viewer costs: steps per second of class visualization on the shapes model.

A: a plain hand-written loop (what a course notebook would write: one tensor of pixels, torch.optim.Adam,
   jitter, L2, blur every 4 steps, the two percentile clips, clamp; the same math as ours).
B: GradientAscentViewer.run() through its Job, to the end (frames throttled to 10/s, PNG-encoded and plotted on
   the viewer's painter thread; the viewer is built once, outside the timing).
C: cw.class_visualization(...) alone (the core loop, no widget).
Runs interleave A B C A B C ...; medians of >= 5 runs with min and max. Overhead = 1 - B/A in steps/s.

    .venv/bin/python benchmarks/bench_ascent.py --reps 5 --steps 200 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import cnnviz_widgets as cw
from cnnviz_widgets.core.optimize import gaussian_blur, zero_small_contribution, zero_small_norm

REG = dict(l2_weight=1e-3, blur_every=4, blur_sigma=0.5, norm_percentile=5.0, contribution_percentile=5.0, jitter=2)


def handwritten(vm, target: int, steps: int, seed: int = 0) -> float:
    """The reference loop; returns the final score (so nothing is optimized away)."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(vm.mean).view(1, 3, 1, 1)
    std = torch.tensor(vm.std).view(1, 3, 1, 1)
    pixels = mean.expand(1, 3, *vm.input_size).clone().requires_grad_(True)
    opt = torch.optim.Adam([pixels], lr=0.05)
    flags = [p.requires_grad for p in vm.module.parameters()]
    for p in vm.module.parameters():
        p.requires_grad_(False)
    for i in range(steps):
        opt.zero_grad()
        dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist()
        x = (torch.roll(pixels, (dy, dx), (2, 3)) - mean) / std
        score = vm.module(x)[0, target] - 1e-3 * x.pow(2).sum()
        (-score).backward()
        opt.step()
        with torch.no_grad():
            p = gaussian_blur(pixels, 0.5) if (i + 1) % 4 == 0 else pixels
            c = zero_small_norm(p - mean, 5.0)
            c = zero_small_contribution(c, -pixels.grad, 5.0)
            pixels.copy_((c + mean).clamp(0, 1))
    for p, f in zip(vm.module.parameters(), flags):
        p.requires_grad_(f)
    return float(score.detach())


def viewer_run(viewer, steps: int) -> None:
    viewer.steps, viewer.lr = steps, 0.05
    viewer.run().join()
    assert viewer.error.layout.display == "none", viewer.error.value
    assert len(viewer.history) == steps and len(viewer.frames) >= 2


def core_run(vm, target: int, steps: int) -> None:
    cw.class_visualization(vm, target, steps=steps, lr=0.05, **REG)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds: all threads, so the painter's encoding counts too)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vm = cw.load_model("shapes", device="cpu")
    target = vm.class_index("star")
    viewer = cw.GradientAscentViewer(vm, target="star")
    cases = {"A hand-written loop": lambda: handwritten(vm, target, args.steps),
             "B GradientAscentViewer (Job, live frames)": lambda: viewer_run(viewer, args.steps),
             "C cw.class_visualization (core only)": lambda: core_run(vm, target, args.steps)}
    handwritten(vm, target, 5)  # warm-up: imports (torch.optim, plotly), first-call allocations
    viewer_run(viewer, 30)
    core_run(vm, target, 5)
    rates = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, fn in cases.items():
            wall, used = timed(fn)
            rates[name].append(args.steps / wall)
            cpu[name].append(1000 * used / args.steps)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.steps} steps of 64x64 class "
          f"visualization on the shapes model, {args.reps} interleaved reps")
    print("| case | steps/s median (min–max) | CPU ms/step median (min–max) |\n|---|---|---|")
    for name, values in rates.items():
        c = cpu[name]
        print(f"| {name} | {statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f}) | "
              f"{statistics.median(c):.2f} ({min(c):.2f}–{max(c):.2f}) |")
    a = statistics.median(rates["A hand-written loop"])
    b = statistics.median(rates["B GradientAscentViewer (Job, live frames)"])
    paired = [1 - bb / aa for aa, bb in zip(rates["A hand-written loop"],
                                             rates["B GradientAscentViewer (Job, live frames)"])]
    print(f"viewer overhead vs hand-written: {1 - b / a:+.1%} (medians); paired per rep: median "
          f"{statistics.median(paired):+.1%}, min {min(paired):+.1%}, max {max(paired):+.1%}")
    ca, cb = statistics.median(cpu["A hand-written loop"]), statistics.median(cpu["B GradientAscentViewer (Job, live frames)"])
    print(f"viewer CPU per step vs hand-written: {cb / ca - 1:+.1%} (medians)")


if __name__ == "__main__":
    main()
