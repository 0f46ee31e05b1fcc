"""``leanbits run EXPERIMENT.toml`` and ``leanbits study NAME``: sweeps from the command line.

The work is done by :mod:`leanbits.sweep`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.console import emit_json, table
from leanbits.results import Row
from leanbits.sweep.executors import EXECUTORS
from leanbits.sweep.presets import study_names, study_path

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run directory (default: runs/NAME, or runs/NAME-quick with "
                   "--quick, NAME being the experiment's name)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where stages run: local processes or a Ray cluster (default: local)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel stages (local: worker processes, default 1; ray: CPUs of "
                   "a locally started instance, default all)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address, e.g. ray://host:10001 or auto (ray only; "
                   "default: start a local instance)")
    p.add_argument("--quick", action="store_true",
                   help="merge the file's [quick] table: a tiny version for smoke tests")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.epochs=3 --set "
                   "data.dataset=fashion-mnist --set 'train.vary.seed=[1,2]' (repeatable)")
    p.add_argument("--stages", default=None,
                   help="directory of stage outputs (default: OUT/stages); share one between "
                   "runs to reuse their stages")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and show the grid and what would run, then stop")
    p.add_argument("--allow-large", action="store_true",
                   help="allow a grid of more than 10,000 points (it is expanded and checked "
                   "in memory before anything runs, which takes a while)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true",
                   help="print a summary (run directory, stages run/reused, frontier) as JSON")


def register(subparsers: Any) -> None:
    """Add the ``run`` and ``study`` subcommands."""
    r = subparsers.add_parser(
        "run", help="run a sweep: every grid point of an experiment file, resumable",
        description="Expand an experiment file's grid into train -> prune -> bits stages, "
        "run those not yet done, and write results.json (one row per point).",
    )
    r.add_argument("experiment", help="experiment TOML file")
    _add_common(r)
    r.set_defaults(func=cmd_run)

    names = study_names()
    s = subparsers.add_parser(
        "study", help="run a preset sweep that tests one of the paper's claims",
        description="Preset experiments: " + ", ".join(names) + ". Use --quick for a tiny "
        "version and --dry-run to see the grid.",
    )
    s.add_argument("name", choices=names, help="the study")
    _add_common(s)
    s.set_defaults(func=cmd_study)


def cmd_run(args: argparse.Namespace) -> int:
    return _execute(_load(args.experiment, args), args)


def cmd_study(args: argparse.Namespace) -> int:
    return _execute(_load(study_path(args.name), args), args)


def _load(path: str | Path, args: argparse.Namespace) -> Any:
    """Load the experiment; a grid over the limit is refused, or with --allow-large its
    size is printed before it is expanded (which then takes a while)."""
    from leanbits.sweep.experiment import MAX_POINTS, describe_grid, load_experiment

    def show(size: int, axes: list[tuple[str, int]]) -> None:
        if size > MAX_POINTS and args.allow_large:
            print(f"grid: {size:,} points ({describe_grid(axes)}); expanding and checking "
                  "them (--allow-large)", file=sys.stderr, flush=True)

    return load_experiment(path, quick=args.quick, overrides=args.overrides,
                           max_points=None if args.allow_large else MAX_POINTS, on_grid=show)


def _execute(exp: Any, args: argparse.Namespace) -> int:
    from leanbits.sweep.run import check_dir, load_results, run_experiment

    out = Path(args.out) if args.out else Path("runs") / (exp.name + "-quick" * args.quick)
    check_dir(out, "--out")
    if args.stages:
        check_dir(args.stages, "--stages")
    if args.dry_run:
        return _dry_run(exp, out, args)
    summary = run_experiment(exp, out, args.executor, jobs=args.jobs, address=args.address,
                             stage_root=args.stages, progress=args.progress)
    doc = load_results(out)
    if args.json:
        emit_json({"out": str(out), "points": len(summary.rows), "ran": summary.ran,
                   "skipped": summary.skipped, "frontier": doc["frontier"]})
        return 0
    print(results_table(doc))
    print(f"\nstages run {sum(summary.ran.values())}, reused {sum(summary.skipped.values())}; "
          f"results: {paths.results(out)}")
    return 0


def _dry_run(exp: Any, out: Path, args: argparse.Namespace) -> int:
    from leanbits.sweep.run import stage_status

    counts = stage_status(exp, Path(args.stages) if args.stages else paths.stages(out))
    if args.json:
        emit_json({"experiment": exp.name, "points": len(exp.points), "stages": counts,
                   "out": str(out)})
        return 0
    print(f"{exp.name}: {len(exp.points)} point(s) -> {out}")
    for kind, c in counts.items():
        if c["stages"]:
            print(f"  {kind:5s} {c['stages']:4d} stage(s), {c['done']} done")
    return 0


def results_table(doc: dict[str, Any], acc: str = "test_acc") -> str:
    """Plain-text table of a results document; ``*`` marks the accuracy-vs-bits frontier."""
    front = set(doc["frontier"].get(acc, []))
    axes = doc["axes"]
    rows = []
    for r in map(Row.from_dict, doc["rows"]):
        rows.append([r.point, *(r.axes.get(a, "-") for a in axes), r.val_acc, r.test_acc,
                     r.nonzero_weights, r.total_bits, "*" if r.point in front else ""])
    return table(["point", *axes, "val acc", "test acc", "nonzero w", "total bits", "front"],
                 rows, title=f"{doc['experiment']}: {len(rows)} point(s)")
