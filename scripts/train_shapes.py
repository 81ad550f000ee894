"""Train the embedded "shapes" CNN and write ``cnnviz_widgets/data/shapes_net.pt``.

Deterministic (fixed seeds, fixed thread count) and CPU-only: a few minutes on 2 cores.

    python scripts/train_shapes.py                 # train and overwrite the shipped weights
    python scripts/train_shapes.py --epochs 2 --out /tmp/net.pt   # quick try

Data: ``make_shapes(--train, seed=1)`` for training, ``make_shapes(2000, seed=2)`` for
validation during training, and a final held-out check on ``make_shapes(2000, seed=12345)``
(seeds never used for training).  Augmentation: random flips and 90-degree rotations (every
class is mirror- and rotation-invariant as a class).

Recorded run of the defaults (the shipped weights): torch 2.11 CPU, 2 threads pinned to 2
cores of a 16-core x86 server that ran 7 other trainings beside it: 40 s data, ~40 s per
epoch, 381 s in all; held-out accuracy 0.983 (2000 images, seed 12345).  This repo's 2-core
dev box measured roughly half that throughput when idle, i.e. expect about 6-10 minutes.
The shipped weights predate a fix that shrank the cross by 4% (its arm corners stuck out of
the unit circle); on the fixed generator they score 0.982 on the same held-out set, and a
re-run of this script gives slightly different (not byte-identical) weights.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz_widgets.core.shapes import SHAPE_CLASSES, make_shapes  # noqa: E402
from cnnviz_widgets.core.shapes_net import ShapesNet, to_tensor, weights_path  # noqa: E402

TRAIN_SEED = 1
VAL_SEED = 2
HELDOUT_SEED = 12345


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random multiple of 90 degrees, drawn per image."""
    out = x.clone()
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    k = torch.randint(0, 4, (n,), generator=gen)
    for r in range(1, 4):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(out[sel], r, dims=(-2, -1))
    return out


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 500) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), bs):
        xb = x[i : i + bs].contiguous(memory_format=torch.channels_last)
        correct += int((net(xb).argmax(1) == y[i : i + bs]).sum())
    return correct / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--train", type=int, default=30000, help="training images")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=float, default=0.1, help="one-cycle warm-up fraction")
    ap.add_argument("--augment", type=int, default=1, help="1: random flips and rot90")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=weights_path())
    args = ap.parse_args()

    print("args:", vars(args), "torch", torch.__version__, flush=True)
    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    gen = torch.Generator().manual_seed(0)

    train = make_shapes(args.train, seed=TRAIN_SEED)
    val = make_shapes(2000, seed=VAL_SEED)
    xtr, ytr = to_tensor(train.images), torch.from_numpy(train.labels)
    xva, yva = to_tensor(val.images), torch.from_numpy(val.labels)
    print(f"data: {len(xtr)} train / {len(xva)} val images in {time.time() - t0:.1f}s", flush=True)

    net = ShapesNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=args.warmup
    )

    for epoch in range(args.epochs):
        net.train()
        te = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i : i + args.batch]
            xb = augment(xtr[idx], gen) if args.augment else xtr[idx]
            xb = xb.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        acc = accuracy(net, xva, yva)
        print(
            f"epoch {epoch + 1}/{args.epochs}  loss {total / seen:.4f}  val acc {acc:.4f}"
            f"  ({time.time() - te:.0f}s)",
            flush=True,
        )

    net.eval()
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)

    # held-out check on a seed never used for training, through the public loader path
    check = ShapesNet()
    check.load_state_dict(torch.load(args.out, map_location="cpu", weights_only=True))
    held = make_shapes(2000, seed=HELDOUT_SEED)
    acc = accuracy(check.to(memory_format=torch.channels_last), to_tensor(held.images),
                   torch.from_numpy(held.labels))
    with torch.no_grad():
        pred = check(to_tensor(held.images)).argmax(1).numpy()
    per_class = {c: float((pred[held.labels == k] == k).mean()) for k, c in enumerate(SHAPE_CLASSES)}
    print("held-out per class:", {c: round(a, 3) for c, a in per_class.items()})
    print(f"held-out accuracy (seed {HELDOUT_SEED}, 2000 images): {acc:.4f}")
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    print(f"total wall time: {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
