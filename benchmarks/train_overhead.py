"""Epoch time of `leanbits train` against a bare PyTorch loop, side by side, as a ratio.

Same model (LeNet-300-100), data (MNIST training split), batch size, optimizer and seed.
The bare loop does forward, loss, backward, step and nothing else. leanbits' time is the
full epoch including its per-epoch diagnostics (validation pass with dead-unit counts,
train-subset evaluation, weight statistics, metrics.jsonl). Runs are interleaved
(bare, leanbits, bare, leanbits, ...) so machine noise hits both alike; medians reported.

    python benchmarks/train_overhead.py [--epochs 3] [--repeats 3] [--write]

``--write`` replaces the train-overhead section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits.data import DataConfig, load_data  # noqa: E402
from leanbits.heads import Head  # noqa: E402
from leanbits.loop import iterate_batches  # noqa: E402
from leanbits.models import build, preset  # noqa: E402
from leanbits.train import TrainConfig, train  # noqa: E402


def bare_epochs(splits, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    torch.manual_seed(seed)
    model = build(preset("lenet-300-100"))
    head = Head("llr", 10)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in iterate_batches(splits.train.x, splits.train.y, batch_size, gen):
            loss = head.loss(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return (time.perf_counter() - t0) / epochs


def leanbits_epochs(splits, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    cfg = TrainConfig(model="lenet-300-100", head="llr", epochs=epochs, batch_size=batch_size,
                      lr=lr, seed=seed, schedule="none")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(DataConfig(), cfg, splits, Path(tmp) / "run", progress=False, log=lambda _l: None)
        elapsed = time.perf_counter() - t0
    return elapsed / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    splits = load_data(DataConfig())
    bare, ours = [], []
    for r in range(args.repeats):
        bare.append(bare_epochs(splits, args.epochs, args.batch_size, 0.05, 1 + r))
        ours.append(leanbits_epochs(splits, args.epochs, args.batch_size, 0.05, 1 + r))
        print(f"repeat {r + 1}: bare {bare[-1]:.3f}s/epoch, leanbits {ours[-1]:.3f}s/epoch",
              file=sys.stderr)
    mb, mo = statistics.median(bare), statistics.median(ours)
    cmd = (f"python benchmarks/train_overhead.py --epochs {args.epochs} "
           f"--repeats {args.repeats} --batch-size {args.batch_size} --write")
    body = "\n".join([
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}  ",
        f"Date: {dt.date.today().isoformat()}",
        "",
        "LeNet-300-100, llr head, MNIST 55,000 training examples, batch "
        f"{args.batch_size}, SGD momentum 0.9; median of {args.repeats} interleaved runs of "
        f"{args.epochs} epochs.",
        "",
        "| loop | seconds / epoch | ratio to bare |",
        "|---|---|---|",
        f"| bare PyTorch (forward, loss, backward, step) | {mb:.3f} | 1.00 |",
        f"| `leanbits train` (with per-epoch diagnostics) | {mo:.3f} | {mo / mb:.2f} |",
        "",
        f"Goal: ratio <= 1.10. Measured: {mo / mb:.2f}.",
    ])
    print(body)
    if args.write:
        update_section(Path(__file__).resolve().parent.parent / "BENCHMARKS.md",
                       "Training overhead", body)


if __name__ == "__main__":
    main()
