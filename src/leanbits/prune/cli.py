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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from leanbits.config import add_arguments, from_sources, stage_hash, to_dict
from leanbits.errors import ConfigError, PruneError
from leanbits.prune.baselines import METHODS, PruneConfig
from leanbits.prune.masks import weight_layers
from leanbits.report.tables import emit_json, table
from leanbits.results import Row, profile_document

__all__ = ["PruneConfig", "register", "run_profile", "run_prune"]

_SEARCH_FIELDS = ("method", "sparsity", "target_accuracy", "max_drop", "search_lo", "search_hi",
                  "search_tol")


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
    add_arguments(q, PruneConfig, skip=_SEARCH_FIELDS)
    q.add_argument("--config", help="TOML file with a [prune] section")
    q.add_argument("--out", help="output directory (default: SNAPSHOT-profile-<hash>)")
    q.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                   help="write profile.png (default: yes)")
    q.add_argument("--json", action="store_true", help="print the rows as JSON")
    q.set_defaults(func=run_profile)


def _load_data(snap: Any, cfg: PruneConfig) -> Any:
    # Imported here: the data layer (and the top-level CLI) must not load for `--help`.
    from leanbits import cli as main_cli
    from leanbits import paths
    from leanbits.snapshot import check_fits_data

    where = snap.path if snap.path is not None else Path("snapshot")
    splits = main_cli.data_for_snapshot(snap.config, limit_train=cfg.limit_train,
                                        source=paths.config(where))
    check_fits_data(snap.plan, snap.head, splits, where)
    return splits


def _default_out(snap_dir: Path, kind: str, *parts: Any) -> Path:
    snap_dir = snap_dir.resolve()
    return snap_dir.parent / f"{snap_dir.name}-{kind}-{stage_hash(*parts)}"


def save_result(out: Path, result: Any, report: dict[str, Any], force: bool = False) -> None:
    """Write the pruned snapshot, ``compact/`` and ``report.json`` (last) into ``out``, as
    one unit (built in ``OUT.partial``; see :class:`leanbits.snapshot.SnapshotWriter`).

    Args:
        force: replace ``out`` even if it holds a snapshot made from other settings.
    """
    from leanbits import paths, snapshot
    from leanbits.fileio import write_text_atomic

    small = result.compact_model
    # The compact model stores its zeros as masks so later stages see the same sparsity.
    small_masks = {f"{n}.weight": m.weight.detach() != 0 for n, m in weight_layers(small)}
    compact_metrics = {k: report[k] for k in ("val_acc", "test_acc") if k in report}
    compact_metrics.update(report.get("compact", {}))
    with snapshot.SnapshotWriter(out, config=result.config, force=force) as w:
        snapshot.write(w.path, result.model, result.plan, result.head, result.config, report,
                       result.masks)
        snapshot.write(w.path / "compact", small, result.compact_plan, result.head,
                       result.config, compact_metrics, small_masks)
        write_text_atomic(paths.report(w.path), json.dumps(report, indent=2, sort_keys=True))


def _reusable(out: Path, cfg: PruneConfig, source: Path) -> dict[str, Any] | None:
    from leanbits import paths
    from leanbits.snapshot import read_toml

    if not (paths.report(out).is_file() and paths.config(out).is_file()):
        return None
    stored = read_toml(paths.config(out))
    want = {k: v for k, v in to_dict(cfg).items() if v is not None}
    if stored.get("prune") != want or stored.get("source") != str(source):
        return None
    try:
        return json.loads(paths.report(out).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


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
    print(f"pruned snapshot: {out}   compact: {out / 'compact'}")


def run_prune(args: argparse.Namespace) -> int:
    """Handler of ``leanbits prune``."""
    from leanbits import snapshot
    from leanbits.prune.search import prune_to_target

    snap = snapshot.load(args.snapshot)
    cfg = from_sources(PruneConfig, args, args.config, section="prune")
    if cfg.target_accuracy is not None and cfg.max_drop is not None:
        raise ConfigError("give at most one of --target-accuracy and --max-drop")
    source = Path(args.snapshot).resolve()
    out = Path(args.out) if args.out else _default_out(source, "prune", cfg)
    report = None if args.force else _reusable(out, cfg, source)
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


def _parse_list(text: str, what: str, convert: Any) -> list[Any]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty")
    try:
        return [convert(t) for t in items]
    except ValueError:
        raise ConfigError(f"--{what}: {text!r} is not a comma-separated list") from None


def plot_profile(rows: list[Row], path: Path, title: str = "") -> Path:
    """Save test (solid) and validation (dashed) accuracy vs nonzero weights, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leanbits.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in rows if r.nonzero_weights is not None]  # skip failed levels
    methods = [m for m in dict.fromkeys(r.axes["method"] for r in rows) if m != "dense"]
    for i, method in enumerate(methods):
        rs = sorted((r for r in rows if r.axes["method"] == method),
                    key=lambda r: r.nonzero_weights)
        xs = [max(r.nonzero_weights, 1) for r in rs]
        color = f"C{i}"
        ax.plot(xs, [r.test_acc for r in rs], "o-", color=color, label=f"{method} (test)")
        ax.plot(xs, [r.val_acc for r in rs], "x--", color=color, alpha=0.6,
                label=f"{method} (val)")
    for r in rows:
        if r.axes["method"] == "dense":
            ax.plot([max(r.nonzero_weights, 1)], [r.test_acc], "k*", markersize=12,
                    label="dense (test)")
    ax.set_xscale("log")
    ax.set_xlabel("nonzero weights")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


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
    from leanbits import paths, snapshot
    from leanbits.fileio import write_text_atomic
    from leanbits.prune.search import profile

    methods = _parse_list(args.methods, "methods", str)
    for m in methods:
        if m not in METHODS:
            raise PruneError(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
    levels = _parse_list(args.sparsities, "sparsities", float)
    snap = snapshot.load(args.snapshot)
    cfg = from_sources(PruneConfig, args, args.config, section="prune")
    source = Path(args.snapshot).resolve()
    out = Path(args.out) if args.out else _default_out(source, "profile", cfg, methods, levels)
    splits = _load_data(snap, cfg)

    def progress(row: Row) -> None:
        if not args.json:
            what = f"val acc {row.val_acc:.4f}" if row.val_acc is not None else row.error
            print(f"  {row.axes['method']:>9} at {row.axes['sparsity']:.4f}: {what}",
                  file=sys.stderr, flush=True)

    rows = profile(snap, methods, levels, splits, cfg, on_row=progress)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths.profile(out), json.dumps(
        profile_document(rows, to_dict(cfg), str(source)), indent=2, sort_keys=True))
    plot = None
    if args.plot:
        try:
            plot = plot_profile(rows, out / "profile.png", title=source.name)
        except ImportError:
            print("matplotlib is not installed; skipping profile.png", file=sys.stderr)
    if args.json:
        emit_json({"out": str(out), "plot": str(plot) if plot else None,
                   "rows": [r.to_dict() for r in rows]})
        return 0
    print(profile_table(rows, f"profile of {source.name}"))
    print(f"\nprofile: {paths.profile(out)}" + (f"   plot: {plot}" if plot else ""))
    return 0
