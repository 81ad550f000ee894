"""Speed of saliency, Grad-CAM and occlusion against their peers, in the same run, interleaved A B A B.

    .venv/bin/python benchmarks/bench_attribution.py                 # resnet18 (random weights), 224 px
    .venv/bin/python benchmarks/bench_attribution.py --reps 5 --skip-occlusion

Rows: median [min, max] seconds over --reps repetitions.  Same numbers are checked before timing.
Floors: one forward + backward of the model (saliency, Grad-CAM); positions x batched forward time
per image (occlusion).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np
import torch

import cnnviz_widgets as cw


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(cases: dict, reps: int) -> dict:
    """Run each case once per round, rounds repeated ``reps`` times: A B A B ..."""
    times = {name: [] for name in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(reps):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return times


def report(times: dict, floor: str | None = None) -> None:
    base = statistics.median(times[floor]) if floor else None
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = f"  {med / base:5.2f}x floor" if base else ""
        print(f"| {name:<44} | {med:8.4f} | [{min(ts):.4f}, {max(ts):.4f}] |{ratio}")


def gradient_rows(vm, x, target, reps):
    from captum.attr import LayerGradCam, Saliency
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = vm.module
    xg = x.clone().requires_grad_(True)

    def fwd_bwd():
        xi = x.clone().requires_grad_(True)
        module(xi)[0, target].backward()

    captum_sal = Saliency(module)
    captum_cam = LayerGradCam(module, module.layer4)
    peer_cam = GradCAM(model=module, target_layers=[module.layer4])
    targets = [ClassifierOutputTarget(target)]
    ours = cw.grad_cam(vm, x, target=target, raw=True)
    ref = captum_cam.attribute(xg, target=target, relu_attributions=True)[:, 0].detach().numpy()
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max(), "Grad-CAM differs from captum"
    cases = {
        "forward+backward (floor)": fwd_bwd,
        "cw.saliency": lambda: cw.saliency(vm, x, target=target),
        "captum Saliency(abs=True)": lambda: captum_sal.attribute(xg, target=target, abs=True),
        "cw.grad_cam": lambda: cw.grad_cam(vm, x, target=target),
        "captum LayerGradCam (+ interpolate)": lambda: captum_cam.attribute(xg, target=target, relu_attributions=True),
        "pytorch-grad-cam GradCAM": lambda: peer_cam(input_tensor=x, targets=targets),
    }
    report(interleaved(cases, reps), floor="forward+backward (floor)")


def occlusion_rows(vm, x, target, reps, batch_sizes):
    from captum.attr import Occlusion

    forward = lambda z: vm.module(z).softmax(-1)  # noqa: E731
    captum_occ = Occlusion(forward)

    def captum_run(ppe):
        with torch.no_grad():
            return captum_occ.attribute(x, sliding_window_shapes=(3, 32, 32), strides=(3, 8, 8), target=target,
                                        baselines=0, perturbations_per_eval=ppe)

    check_same_numbers(vm, x, target, captum_run(32))
    best = min(batch_sizes, key=lambda b: timed(lambda: captum_run(b)))
    ours_best = min(batch_sizes, key=lambda b: timed(lambda: cw.occlusion(vm, x, target=target, batch_size=b)))
    with torch.inference_mode():
        per_image = timed(lambda: vm.module(x.expand(ours_best, -1, -1, -1).contiguous())) / ours_best
    steps = cw.occlusion_steps(vm, x, target=target, batch_size=ours_best)
    first = timed(lambda: next(steps))
    steps.close()
    print(f"captum best perturbations_per_eval={best}; ours best batch_size={ours_best}; "
          f"first partial map after {first:.3f} s; floor 625 x {per_image * 1000:.1f} ms = {625 * per_image:.2f} s")
    cases = {
        "floor: 625 x batched forward per image": lambda: time.sleep(625 * per_image),
        f"cw.occlusion (batch_size={ours_best})": lambda: cw.occlusion(vm, x, target=target, batch_size=ours_best),
        f"captum Occlusion (ppe={best})": lambda: captum_run(best),
    }
    report(interleaved(cases, reps), floor="floor: 625 x batched forward per image")


def check_same_numbers(vm, x, target, captum_map) -> None:
    """captum's per-pixel map = mean over covering patches of (p without patch - p with patch)."""
    from cnnviz_widgets.core.occlusion import patch_positions

    grid = cw.occlusion(vm, x, target=target)[0]
    with torch.no_grad():
        base = float(vm.module(x).softmax(-1)[0, target])
    drop, count = np.zeros(x.shape[2:]), np.zeros(x.shape[2:])
    for iy, y in enumerate(patch_positions(x.shape[2], 32, 8)):
        for ix, x0 in enumerate(patch_positions(x.shape[3], 32, 8)):
            drop[y:y + 32, x0:x0 + 32] += base - grid[iy, ix]
            count[y:y + 32, x0:x0 + 32] += 1
    error = np.abs(drop / count - captum_map[0, 0].numpy()).max()
    print(f"occlusion vs captum Occlusion: max abs difference {error:.2e}")
    assert error < 1e-6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--skip-occlusion", action="store_true")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # captum's "setting requires_grad" notes
    import captum
    import torchvision
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, captum {captum.__version__}, "
          f"threads {torch.get_num_threads()}, python {sys.version.split()[0]}")
    vm = cw.load_model("resnet18", weights=None, device="cpu")
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    target = 3
    print(f"resnet18 (random weights), input {tuple(x.shape)}, {args.reps} reps, median [min, max] s")
    gradient_rows(vm, x, target, args.reps)
    if not args.skip_occlusion:
        occlusion_rows(vm, x, target, args.reps, args.batch_sizes)


if __name__ == "__main__":
    main()
