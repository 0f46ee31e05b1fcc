"""``leanbits demo``: the main job (see :mod:`leanbits.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def cmd_demo(args: argparse.Namespace) -> int:
    """Handler of ``leanbits demo``."""
    from leanbits.demo import run

    out = Path(args.out) if args.out else Path(args.runs) / ("demo-quick" if args.quick
                                                             else "demo")
    run(out, quick=args.quick, epochs=args.epochs)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    m = subparsers.add_parser(
        "demo", help="the main job: train, profile, snapshot-prune, pack, report",
        description="Run the packaged demo experiment (`leanbits study demo --dry-run` shows "
        "it) through the sweep and print what each step did.")
    m.add_argument("--runs", default="runs", help="parent of the run directory (default: "
                   "runs; the run is RUNS/demo, or RUNS/demo-quick with --quick)")
    m.add_argument("--out", default=None, help="the run directory (overrides --runs)")
    m.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default: the experiment's, 12)")
    m.add_argument("--quick", action="store_true", help="a small version (for tests)")
    m.set_defaults(func=cmd_demo)
