"""``leanbits report RUN_DIR [RUN_DIR ...]``: write report.md (+ figures/) and a
self-contained report.html, from a run, snapshot or profile directory or a study's committed
``results.csv``; several directories are reported as one (e.g. a sweep per network).

The work is done by :func:`leanbits.report.build_report`; this module parses and prints.
"""

from __future__ import annotations

import argparse

from leanbits import paths
from leanbits.console import emit_json

# The library is imported inside the handlers: it loads torch (seconds), and building
# this command's parser (--help) or refusing a bad flag must not wait for it.


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report of ``args.run_dir``; print where it is (or JSON with ``--json``)."""
    from leanbits.errors import LeanbitsError
    from leanbits.report import build_report

    if len(args.run_dir) > 1 and args.out is None:
        raise LeanbitsError(f"{len(args.run_dir)} directories given: say where their joint "
                            "report goes with --out DIR")
    files = build_report(args.run_dir, args.out, args.study)
    if args.json:
        emit_json(files.to_dict())
        return 0
    for note in files.notes:
        print(f"note: {note}")
    print(f"report: {files.markdown} ({len(files.figures)} figures in "
          f"{paths.figures(files.markdown.parent)})")
    print(f"html:   {files.html} (self-contained, opens offline)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand to the ``leanbits`` parser."""
    p = subparsers.add_parser(
        "report",
        help="plots and tables of a run, snapshot or profile directory (Markdown + HTML)",
        description="Write report.md (PNG figures in figures/) and a self-contained "
        "report.html: weight size, output magnitude and losses per epoch, accuracy against "
        "nonzero weights and against total bits (Pareto frontier), per-layer sparsity, bit "
        "breakdowns, the numbers behind every plot and the configs that produced them. A "
        "sweep, or a directory holding a study's results.csv (docs/results/<study>), also "
        "gets results over seeds: mean ± std per configuration, test error against total "
        "bits with seed spread, and the study's verdicts. When a sweep trained several "
        "seeds per configuration, every table has one row per configuration, mean ± std "
        "over its seeds (each seed's values stay in the run's files), and the "
        "configuration section shows one config.toml per configuration, naming its seeds "
        "and the keys that follow the seed.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="+",
                   help="sweep run directory, snapshot directory, `leanbits profile` output "
                   "or a directory holding a study's results.csv; several are reported "
                   "together (e.g. one sweep per network compared; needs --out)")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="state this study's verdicts (default: the first RUN_DIR's name "
                   "when it names "
                   "one: explosion, regularization, snapshot, frontier-mnist, "
                   "frontier-fashion)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where to write the report (default: RUN_DIR; needed for several)")
    p.add_argument("--json", action="store_true",
                   help="print the written paths, sections and notes as JSON")
    p.set_defaults(func=cmd_report)
