"""``leanbits train`` (train a network, write a snapshot) and ``leanbits eval`` (accuracy
and loss of a snapshot or ``.lbits`` file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from leanbits.config import add_arguments, from_sources
from leanbits.console import emit_json, table
from leanbits.fileio import check_output_dir
from leanbits.settings.data import DATASETS, DataConfig
from leanbits.settings.train import TrainConfig

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.

#: the tables a ``train --config`` file may hold
SECTIONS = ("data", "train")


def cmd_train(args: argparse.Namespace) -> int:
    data_cfg = from_sources(DataConfig, args, args.config, section="data", sections=SECTIONS)
    cfg = from_sources(TrainConfig, args, args.config, section="train", sections=SECTIONS)
    from leanbits.data import load_data
    from leanbits.train import run_name, train

    out = check_output_dir(Path(args.out) if args.out else Path(args.runs)
                           / run_name(data_cfg, cfg))  # before the data is loaded
    splits = load_data(data_cfg)
    print(f"training {cfg.model} with the {cfg.head} head on {data_cfg.dataset} -> {out}",
          file=sys.stderr)
    result = train(data_cfg, cfg, splits, out, progress=args.progress, force=args.force)
    final = dict(result.final, snapshot=str(out))
    if args.json:
        emit_json(final)
        return 0
    rows = [[h["epoch"], h["train_loss"], h["train_acc"], h["val_loss"], h["val_acc"],
             h["mean_abs_output"], max(v["max_abs"] for v in h["layers"].values())]
            for h in result.history]
    print(table(["epoch", "train loss", "train acc", "val loss", "val acc", "mean |out|",
                 "max |w|"], rows, title=f"{cfg.model} / {cfg.head} head"))
    print(f"\nvalidation accuracy {final['val_acc']:.4f}   test accuracy {final['test_acc']:.4f}"
          f"   parameters {final['params']:,}   time {final['train_time_s']:.1f}s")
    print(f"snapshot: {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from leanbits import paths, snapshot
    from leanbits.bits import evaluate_lbits
    from leanbits.data import snapshot_data
    from leanbits.train import evaluate_splits

    path = Path(args.model)
    if path.is_file():
        report = evaluate_lbits(path, None, dataset=args.dataset)
    else:
        snap = snapshot.load(path)
        splits = snapshot_data(snap.config, source=paths.config(path))
        snapshot.check_fits_data(snap.plan, snap.head, splits, path)
        report = {"model": str(path), **evaluate_splits(snap.model, snap.head, splits)}
    if args.json:
        emit_json(report)
    else:
        keys = [k for k in ("val_acc", "val_loss", "test_acc", "test_loss") if k in report]
        print(table(["model", *keys], [[str(path), *(report[k] for k in keys)]]))
    return 0


def register(sub: Any) -> None:
    """Add the ``train`` and ``eval`` subcommands."""
    t = sub.add_parser("train", help="train a network and write a snapshot")
    add_arguments(t, DataConfig)
    add_arguments(t, TrainConfig)
    t.add_argument("--config", help="TOML file with [data] and [train] sections")
    t.add_argument("--out", help="snapshot directory (default: RUNS/<model>-<head>-<hash>)")
    t.add_argument("--runs", default="runs", help="parent of default run directories")
    t.add_argument("--force", action="store_true",
                   help="replace an existing snapshot in --out made from other settings")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    t.add_argument("--json", action="store_true", help="print final metrics as JSON")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="accuracy and loss of a snapshot or .lbits file")
    e.add_argument("model", help="snapshot directory or .lbits file")
    e.add_argument("--dataset", default="mnist", choices=DATASETS,
                   help="data set for a .lbits file (a snapshot knows its own; default: mnist)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_eval)
