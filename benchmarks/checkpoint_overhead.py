"""What saving sparse VD's training after every epoch costs: epoch time with and without an
``EpochCheckpoint``, side by side, as a ratio.

The same variational training (``prune.variational.train_variational``: LeNet-300-100 made
variational, MNIST training split, Adam, the KL warm-up) runs for ``--epochs`` epochs
without a checkpoint and with one saved after every epoch (model, Adam moments,
scheduler, RNG state, history: what ``leanbits compress`` writes). Runs are interleaved
(without, with, without, ...) so machine noise hits both alike; medians reported.

    python benchmarks/checkpoint_overhead.py [--epochs 3] [--repeats 3] [--write]
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
from _bench_md import publish  # noqa: E402

from leanbits.data import DataConfig, load_data  # noqa: E402
from leanbits.heads import Head  # noqa: E402
from leanbits.loop import EpochCheckpoint  # noqa: E402
from leanbits.models import build, preset  # noqa: E402
from leanbits.prune import PruneConfig  # noqa: E402
from leanbits.prune.variational import train_variational  # noqa: E402

TITLE = "Checkpointing sparse VD's training after every epoch"


def one_run(splits, epochs: int, checkpoint: Path | None) -> tuple[float, int]:
    """Seconds per epoch of one training, and the checkpoint's size in bytes (0: none)."""
    torch.manual_seed(0)
    model = build(preset("lenet-300-100"))
    cfg = PruneConfig(vd_epochs=epochs, vd_warmup_epochs=1, seed=0)
    ckpt = EpochCheckpoint(checkpoint, "bench") if checkpoint is not None else None
    t0 = time.perf_counter()
    train_variational(model, (splits.train.x, splits.train.y), Head("llr", 10).loss, cfg,
                      checkpoint=ckpt)
    seconds = (time.perf_counter() - t0) / epochs
    size = checkpoint.stat().st_size if checkpoint is not None else 0
    if checkpoint is not None:
        checkpoint.unlink()  # the next run must not resume it
    return seconds, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args(argv)
    splits = load_data(DataConfig(dataset="mnist"))
    plain, saved, size = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            plain.append(one_run(splits, args.epochs, None)[0])
            s, size = one_run(splits, args.epochs, Path(tmp) / "vd.ckpt")
            saved.append(s)
    a, b = statistics.median(plain), statistics.median(saved)
    body = "\n".join([
        f"`python benchmarks/checkpoint_overhead.py --epochs {args.epochs} --repeats "
        f"{args.repeats} --write` ({platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, {dt.date.today().isoformat()}). Sparse VD's training of LeNet-300-100 on "
        "the MNIST training split, without and with a checkpoint saved after every epoch, "
        "runs interleaved; medians of the per-epoch time.", "",
        "| epoch without (s) | epoch with (s) | with / without | checkpoint size |",
        "|---|---|---|---|",
        f"| {a:.2f} ({min(plain):.2f}-{max(plain):.2f}) | {b:.2f} ({min(saved):.2f}-"
        f"{max(saved):.2f}) | {b / a:.3f} | {size / 1e6:.1f} MB |", "",
        "Medians with the range over the repeats in brackets: where the ranges overlap, the "
        "cost of saving is within this machine's run-to-run noise.",
    ])
    publish(body, TITLE, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
