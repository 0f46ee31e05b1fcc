"""``leanbits prune`` and ``leanbits profile``.

Usage::

    leanbits prune SNAPSHOT --method refit --sparsity 0.98 --out DIR [--json]
    leanbits prune SNAPSHOT --method refit --target-accuracy 0.98 --out DIR
    leanbits prune SNAPSHOT --method refit --max-drop 0.005 --out DIR
    leanbits profile SNAPSHOT --methods none,refit,finetune \\
        --sparsities 0.5,0.8,0.9,0.95,0.98 --out DIR [--json]

``prune`` writes a snapshot with masks to DIR (``weights.safetensors``, ``masks.safetensors``,
``model.json``, ``config.toml`` with a ``[prune]`` section, ``metrics.json``), the compact
rebuild as a second snapshot in ``DIR/compact/``, and ``report.json`` last. An output whose
``report.json`` was written with the same settings is reused unless ``--force`` is given.
``profile`` writes ``profile.json`` and ``profile.png`` (accuracy vs nonzero weights).
The work is done by :mod:`leanbits.prune`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.config import add_arguments, from_sources, parse_list, stage_hash, to_dict
from leanbits.console import emit_json, table
from leanbits.errors import ConfigError, PruneError
from leanbits.fileio import check_output_dir, write_bytes_atomic
from leanbits.results import Row
from leanbits.settings.prune import METHODS, PROFILE_SET_FIELDS, PruneConfig

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def register(subparsers: Any) -> None:
    """Add the ``prune`` and ``profile`` subcommands to the ``leanbits`` parser."""
    p = subparsers.add_parser(
        "prune", help="prune a snapshot once, then re-fit non-weights (or run another method)",
        description="Magnitude-prune a trained snapshot and re-fit only its non-weight "
        "parameters (method refit), run a baseline, or train for sparsity (gradual, "
        "sparse-vd, structured); writes a pruned snapshot, its compact rebuild in "
        "OUT/compact/ and report.json.",
    )
    p.add_argument("snapshot", help="snapshot directory (from `leanbits train`)")
    add_arguments(p, PruneConfig)
    p.add_argument("--config", help="TOML file with a [prune] section")
    p.add_argument("--out", help="output directory (default: SNAPSHOT-prune-<hash> beside it)")
    p.add_argument("--force", action="store_true",
                   help="redo even if OUT has this result; replace OUT if it holds another "
                   "snapshot")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_prune)

    q = subparsers.add_parser(
        "profile", help="accuracy vs size of one snapshot over methods and sparsities",
        description="Prune one snapshot with each method at each sparsity; print a table, "
        "write profile.json and profile.png (accuracy vs nonzero weights).",
    )
    q.add_argument("snapshot", help="snapshot directory")
    q.add_argument("--methods", default="none,refit,finetune",
                   help=f"comma-separated methods (default: none,refit,finetune); "
                   f"any of {', '.join(METHODS)}")
    q.add_argument("--sparsities", default="0.5,0.8,0.9,0.95,0.98",
                   help="comma-separated levels in [0, 1) (default: 0.5,0.8,0.9,0.95,0.98)")
    add_arguments(q, PruneConfig, skip=PROFILE_SET_FIELDS)
    q.add_argument("--config", help="TOML file with a [prune] section")
    q.add_argument("--out", help="output directory (default: SNAPSHOT-profile-<hash>)")
    q.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                   help="write profile.png (default: yes)")
    q.add_argument("--json", action="store_true", help="print the rows as JSON")
    q.set_defaults(func=run_profile)


def _load_data(snap: Any, cfg: PruneConfig) -> Any:
    from leanbits import snapshot
    from leanbits.data import snapshot_data

    where = snap.path if snap.path is not None else Path("snapshot")
    splits = snapshot_data(snap.config, limit_train=cfg.limit_train,
                           source=paths.config(where))
    snapshot.check_fits_data(snap.plan, snap.head, splits, where)
    return splits


def _default_out(snap_dir: Path, kind: str, *parts: Any) -> Path:
    return paths.beside(snap_dir.resolve(), kind, stage_hash(*parts))


def _print_report(report: dict[str, Any], out: Path) -> None:
    rows = [[layer, report["units"][layer], report["live_units"][layer],
             report["connections"].get(layer, 0)] for layer in report["units"]]
    level = report["sparsity_requested"]
    at = f"at sparsity {level}" if level is not None else f"(sparsity {report['sparsity']:.4f})"
    print(table(["layer", "units", "live", "connections"], rows,
                 title=f"{report['method']} {at}"))
    d = report["dense"]
    print(f"\nvalidation accuracy {report['val_acc']:.4f} (dense {d['val_acc']:.4f})   "
          f"test accuracy {report['test_acc']:.4f} (dense {d['test_acc']:.4f})")
    print(f"nonzero weights {report['nonzero_weights']:,} of {report['weights']:,}   "
          f"effective connections {report['effective_connections']:,}   "
          f"MACs/example {report['macs_sparse']:,} sparse, {report['macs_dense']:,} dense")
    print(f"backprop epochs {report['backprop_epochs']}   time {report['wall_time_s']:.1f}s")
    if "search" in report:
        print(f"searched: sparsest level meeting validation accuracy "
              f"{report['search']['required_val_acc']:.4f}")
    print(f"pruned snapshot: {out}   compact: {paths.compact(out)}")


def run_prune(args: argparse.Namespace) -> int:
    """Handler of ``leanbits prune``."""
    cfg = from_sources(PruneConfig, args, args.config, section="prune")
    if cfg.target_accuracy is not None and cfg.max_drop is not None:
        raise ConfigError("give at most one of --target-accuracy and --max-drop")
    from leanbits import snapshot
    from leanbits.prune import load_saved, prune_to_target, save_result

    snap = snapshot.load(args.snapshot)
    source = Path(args.snapshot).resolve()
    out = check_output_dir(Path(args.out) if args.out else _default_out(source, "prune", cfg))
    report = None if args.force else load_saved(out, cfg, source)
    if report is not None:
        print(f"{out} already holds this result (use --force to redo)", file=sys.stderr)
    else:
        splits = _load_data(snap, cfg)
        result, report, _ = prune_to_target(snap, splits, cfg)
        result.config["source"] = str(source)
        report["source"] = str(source)
        save_result(out, result, report, force=args.force)
    if args.json:
        emit_json(dict(report, out=str(out)))
    else:
        _print_report(report, out)
    return 0


#: columns of the profile table: (header, value of a row)
PROFILE_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("method", lambda r: r.axes["method"]),
    ("requested", lambda r: r.axes["sparsity"]),
    ("sparsity", lambda r: r.sparsity),
    ("val_acc", lambda r: r.val_acc),
    ("test_acc", lambda r: r.test_acc),
    ("nonzero_weights", lambda r: r.nonzero_weights),
    ("effective_connections", lambda r: r.effective_connections),
    ("macs_effective", lambda r: _stage_metric(r, "macs_effective")),
    ("backprop_epochs", lambda r: _stage_metric(r, "backprop_epochs")),
    ("wall_time_s", lambda r: _stage_metric(r, "wall_time_s")),
    ("compact_params", lambda r: r.params),
)


def _stage_metric(row: Row, key: str) -> Any:
    return row.metrics.get("prune", {}).get(key)


def profile_table(rows: list[Row], title: str) -> str:
    """The profile's rows as a plain-text table."""
    return table([h for h, _ in PROFILE_COLUMNS],
                 [[get(r) for _, get in PROFILE_COLUMNS] for r in rows], title=title)


def run_profile(args: argparse.Namespace) -> int:
    """Handler of ``leanbits profile``."""
    methods = parse_list(args.methods, "methods", str)
    for m in methods:
        if m not in METHODS:
            raise PruneError(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
    levels = parse_list(args.sparsities, "sparsities", float)
    cfg = from_sources(PruneConfig, args, args.config, section="prune")
    from leanbits import snapshot
    from leanbits.prune import profile, save_profile
    from leanbits.report import plots

    snap = snapshot.load(args.snapshot)
    source = Path(args.snapshot).resolve()
    out = check_output_dir(Path(args.out) if args.out
                           else _default_out(source, "profile", cfg, methods, levels))
    splits = _load_data(snap, cfg)

    def progress(row: Row) -> None:
        if not args.json:
            what = f"val acc {row.val_acc:.4f}" if row.val_acc is not None else row.error
            print(f"  {row.axes['method']:>9} at {row.axes['sparsity']:.4f}: {what}",
                  file=sys.stderr, flush=True)

    rows = profile(snap, methods, levels, splits, cfg, on_row=progress)
    doc_path = save_profile(out, rows, to_dict(cfg), str(source))
    plot = None
    if args.plot:
        try:
            plot = paths.profile_plot(out)
            write_bytes_atomic(plot, plots.profile_figure(rows, title=source.name))
        except ImportError:
            plot = None
            print("matplotlib is not installed; skipping profile.png", file=sys.stderr)
    if args.json:
        emit_json({"out": str(out), "plot": str(plot) if plot else None,
                   "rows": [r.to_dict() for r in rows]})
        return 0
    print(profile_table(rows, f"profile of {source.name}"))
    print(f"\nprofile: {doc_path}" + (f"   plot: {plot}" if plot else ""))
    return 0
