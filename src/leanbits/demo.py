"""The main job (``make demo``): train LeNet-300-100 with an LLR head on real MNIST,
snapshot-prune it, pack it into a .lbits file and print what each step gave."""

from __future__ import annotations

import sys
from pathlib import Path

from leanbits.report.tables import table
from leanbits.train import DataConfig, TrainConfig, run_name, train


def run(runs: Path = Path("runs"), epochs: int = 8, quick: bool = False) -> Path:
    """Run the demo pipeline; returns the run directory."""
    from leanbits.cli import load_data

    data_cfg = DataConfig(limit_train=5000 if quick else None)
    cfg = TrainConfig(model="lenet-300-100", head="llr", epochs=2 if quick else epochs,
                      lr=0.05, seed=1)
    out = runs / run_name(data_cfg, cfg)
    splits = load_data(data_cfg.dataset, data_cfg.val_size, data_cfg.split_seed,
                       data_cfg.limit_train)
    print(f"[1/1] training LeNet-300-100 (llr head) on MNIST -> {out}", file=sys.stderr)
    result = train(data_cfg, cfg, splits, out)
    rows = [[h["epoch"], h["train_loss"], h["val_acc"], h["mean_abs_output"],
             max(v["max_abs"] for v in h["layers"].values())] for h in result.history]
    print(table(["epoch", "train loss", "val acc", "mean |LLR|", "max |w|"], rows,
                title="training"))
    f = result.final
    print(f"\nLeNet-300-100 / llr: val acc {f['val_acc']:.4f}, test acc {f['test_acc']:.4f}, "
          f"{f['params']:,} parameters, {f['train_time_s']:.0f}s")
    print(f"snapshot: {out}")
    return out
