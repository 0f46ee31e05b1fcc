"""Inference speed of the compacted model against the dense one, as a ratio of the
multiply-accumulate reduction, for LeNet-300-100 and LeNet-5 (PyTorch and onnxruntime,
batch 1 and 256, medians of interleaved repeated runs after warm-up).

Two kinds of pruning are compacted: unstructured (global magnitude; compaction can only
drop units left with no connections, so the dense layers barely shrink) and structured
(whole units / channels by weight norm, biases re-fitted), where compaction removes the
units physically and the MACs fall.

    python benchmarks/export_speed.py SNAPSHOT_MLP SNAPSHOT_LENET5 [--units 0.7] [--write]

The snapshots: any `leanbits train` output, e.g. the frontier study's train stages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import update_section  # noqa: E402

from leanbits import snapshot  # noqa: E402
from leanbits.data import snapshot_data  # noqa: E402
from leanbits.export import bench_models  # noqa: E402
from leanbits.prune import PruneConfig, macs  # noqa: E402
from leanbits.prune.search import prune_snapshot  # noqa: E402
from leanbits.train import evaluate  # noqa: E402


def measure(snap_dir: Path, units: float, weights: float, repeats: int) -> list[list]:
    snap = snapshot.load(snap_dir)
    splits = snapshot_data(snap.config)
    in_shape = tuple(snap.plan.in_shape)
    rows = []
    cases = [("unstructured", weights, PruneConfig(refit_epochs=1)),
             ("structured", units, PruneConfig(granularity="unit", scope="layer",
                                               refit_epochs=2))]
    for kind, amount, cfg in cases:
        res, rep = prune_snapshot(snap, "refit", amount, splits, cfg)
        dense, small = res.model.eval(), res.compact_model.eval()
        acc = evaluate(small, snap.head, splits.test.x, splits.test.y)["acc"]
        mac_d = macs(dense, in_shape)["dense"]
        mac_c = macs(small, in_shape)["dense"]
        with tempfile.TemporaryDirectory() as tmp:
            timing = bench_models({"dense": dense, "compact": small}, in_shape, (1, 256),
                                  repeats=repeats, onnx_dir=tmp)
        by = {(r["model"], r["runtime"], r["batch"]): r["median_ms"] for r in timing}
        widths = "-".join(map(str, (*res.compact_plan.conv, *res.compact_plan.fc)))
        for runtime in ("pytorch", "onnxruntime"):
            for batch in (1, 256):
                d, c = by[("dense", runtime, batch)], by[("compact", runtime, batch)]
                rows.append([snap.plan.family, kind, f"{amount:.2f}", widths, f"{acc:.4f}",
                             f"{mac_d / mac_c:.2f}", runtime, batch, f"{d:.3f}", f"{c:.3f}",
                             f"{d / c:.2f}", f"{(d / c) / (mac_d / mac_c):.2f}"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snapshots", nargs="+", type=Path)
    ap.add_argument("--units", type=float, default=0.7, help="structured: unit fraction")
    ap.add_argument("--weights", type=float, default=0.9, help="unstructured: sparsity")
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    for s in args.snapshots:
        rows += measure(s, args.units, args.weights, args.repeats)
    head = ["net", "pruning", "amount", "compact widths", "test acc", "MAC reduction",
            "runtime", "batch", "dense ms", "compact ms", "speed-up", "speed-up / MAC red."]
    lines = [
        f"Command: `python benchmarks/export_speed.py {' '.join(map(str, args.snapshots))} "
        f"--units {args.units} --weights {args.weights} --write`  ",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}  ",
        f"Date: {dt.date.today().isoformat()}",
        "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    ok = [r for r in rows if r[1] == "structured"]
    worst = min(float(r[-1]) for r in ok) if ok else float("nan")
    lines += ["", "Goal: speed-up >= 0.7 x MAC reduction for the compacted models. Worst "
              f"structured case measured: {worst:.2f} (batch 1 is dominated by per-call "
              "overhead, which no pruning removes)."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        update_section(Path(__file__).resolve().parent.parent / "BENCHMARKS.md",
                       "Compact export: measured speed-up", body)


if __name__ == "__main__":
    main()
