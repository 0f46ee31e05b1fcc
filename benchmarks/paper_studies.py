"""Verdicts on the paper's claims, each from its study's per-seed results.

Two sources, one computation (``leanbits.report.claims``):

* ``python benchmarks/paper_studies.py RUNS [--write]``: reads every study run found under
  RUNS (``RUNS/explosion``, ``RUNS/regularization``, ``RUNS/snapshot``,
  ``RUNS/frontier-mnist``, ``RUNS/frontier-fashion``) into per-seed records; with
  ``--write`` it also commits them as ``docs/results/<name>/results.csv`` (one compact row
  per seed and grid point, no paths) and writes the study's report (Markdown, figures,
  HTML) into ``docs/results/<name>/``.
* ``python benchmarks/paper_studies.py --from-csv [--write]``: no runs, no training: the
  same verdicts from the committed ``docs/results/<name>/results.csv``, for every study
  that has one (the reports beside them are left as they are; ``leanbits report
  docs/results/<name> --out DIR`` rebuilds one from its CSV: the same results-over-seeds
  section, tables and figures, without the per-epoch curves a run directory adds).

With ``--write`` the tables and verdicts go to ``docs/results/README.md`` and BENCHMARKS.md,
one section per study; with ``--only`` just the named studies' sections are replaced and
the others are kept as they were. The claim-4 section also states the budget of every
pruning method (:func:`leanbits.report.claims.baseline_budgets`), read from the run's
``experiment.toml``, or from the shipped study preset with ``--from-csv``.
Every verdict's criterion is a constant in ``leanbits/report/claims/criteria.py`` fixed
before the studies run; tables show mean ± std over seeds and 95 % CIs of differences
paired by seed; every choice (cutoff, fewest bits at a level, most prunable) is made on validation.

The runs: `leanbits study NAME --out runs/studies/NAME --jobs 2` for explosion,
regularization and snapshot; the frontier study as in benchmarks/bits_mnist.py
(`--set 'train.vary.model=["lenet-300-100","lenet5"]'` into runs/studies/frontier-mnist),
and once more with `--set data.dataset=fashion-mnist --set train.epochs=12
--set train.lr=0.02` (at 0.05 LeNet-5 diverged in its first epoch on Fashion-MNIST) into
runs/studies/frontier-fashion. Each run directory keeps the effective experiment.toml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import sections as md_sections  # noqa: E402
from _bench_md import update_section  # noqa: E402

from leanbits import paths  # noqa: E402
from leanbits.errors import LeanbitsError  # noqa: E402
from leanbits.fileio import write_text_atomic  # noqa: E402
from leanbits.report.build import build_report  # noqa: E402
from leanbits.report.claims import (  # noqa: E402
    BUDGETED_STUDIES,
    STUDIES,
    baseline_budgets,
    criteria_text,
)
from leanbits.report.seeds import CSV_NAME, read_csv, records_of_run, write_csv  # noqa: E402
from leanbits.sweep.experiment import load_experiment, study_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
_FRONTIER = ("leanbits study frontier --out runs/studies/{name} --jobs 2 "
             "--set 'train.vary.model=[\"lenet-300-100\",\"lenet5\"]'")
#: study name -> the command that runs it from scratch (into runs/studies/<name>)
STUDY_COMMANDS = {
    "explosion": "leanbits study explosion --out runs/studies/explosion --jobs 2",
    "regularization": "leanbits study regularization --out runs/studies/regularization "
                      "--jobs 2",
    "snapshot": "leanbits study snapshot --out runs/studies/snapshot --jobs 2",
    "frontier-mnist": _FRONTIER.format(name="frontier-mnist"),
    "frontier-fashion": _FRONTIER.format(name="frontier-fashion")
    + " --set data.dataset=fashion-mnist --set train.epochs=12 --set train.lr=0.02",
}


def regenerate(name: str) -> str:
    """How a study's section is made again: from scratch, and from its committed CSV."""
    return (f"Regenerate: `{STUDY_COMMANDS[name]}`, then `python benchmarks/paper_studies.py "
            "runs/studies --write` (every study found there); from the committed CSV, "
            f"without training: `python benchmarks/paper_studies.py --from-csv --only {name}`.")


BUDGET_PRICE = ("The price of each budget - accuracy against backprop epochs at 0.9 / 0.95 "
                "/ 0.98 sparsity for re-fit, fine-tune, iterative and rewind - is measured "
                "by `benchmarks/baseline_budget.py`.")


def budgets(name: str, run: Path | None) -> str:
    """The budgets paragraph of a study of ``BUDGETED_STUDIES``: from the run's effective
    experiment file when reading a run, else from the shipped preset of that name."""
    if run is not None:
        experiment = load_experiment(paths.experiment(run))
        source = f"the run's {paths.experiment(Path()).name}"
    else:
        experiment = load_experiment(study_path(name))
        source = f"`leanbits/sweep/studies/{name}.toml`"
    return f"{baseline_budgets(experiment, source)} {BUDGET_PRICE}"


def readme(path: Path, new: dict[str, str]) -> str:
    """docs/results/README.md: the criteria, then one section per study in ``STUDIES``
    order - the ones in ``new`` (``{title: body}``) as given, every other one as ``path``
    has it (so ``--only`` keeps them)."""
    old = md_sections(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = ["# What our measurements say about the paper's claims", "",
           "Each section is written by `benchmarks/paper_studies.py` from the study's "
           f"per-seed results (`<study>/{CSV_NAME}`; `--from-csv` recomputes every verdict "
           "from them without training), and says by which command, where and when; "
           "`--only` rewrites the named studies' sections and keeps the others. The report "
           "beside each study has the plots.", "",
           "## Verdict criteria (fixed before the runs)", "",
           "Each is decided by the 95 % confidence interval (Student t) of the difference "
           "between two arms paired by seed: supported when the whole interval lies beyond "
           "the bound, not supported when it lies short of it, inconclusive otherwise.", "",
           criteria_text(), ""]
    for title, _fn in STUDIES.values():
        body = new[title] if title in new else old.get(title)
        if body is not None:
            out += [f"## {title}", "", body, ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="?",
                    help="directory holding the study run directories")
    ap.add_argument("--from-csv", action="store_true",
                    help=f"read docs/results/<study>/{CSV_NAME} instead of runs")
    ap.add_argument("--write", action="store_true",
                    help="write docs/results/ and update BENCHMARKS.md")
    ap.add_argument("--only", help="comma-separated study names")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where the studies' <name>/results.csv are read and written "
                    "(default: docs/results)")
    args = ap.parse_args()
    if (args.runs is None) == (not args.from_csv):
        ap.error("give RUNS or --from-csv (one of them)")
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(STUDIES):
        ap.error(f"--only {args.only}: unknown study; valid: {', '.join(STUDIES)}")
    sections = []
    for name, (title, fn) in STUDIES.items():
        if only and name not in only:
            continue
        csv_path = args.results / name / CSV_NAME
        try:
            if args.from_csv:
                if not csv_path.is_file():
                    continue
                records = read_csv(csv_path)
            else:
                run = args.runs / name
                if not paths.results(run).is_file():
                    continue
                records = records_of_run(run)
            budget = (budgets(name, None if args.from_csv else args.runs / name) + "\n\n"
                      if name in BUDGETED_STUDIES else "")
            if args.write and not args.from_csv:
                build_report(args.runs / name, out_dir=args.results / name, study=name)
                write_csv(csv_path, records)
        except LeanbitsError as exc:
            sys.exit(f"paper_studies: {exc}")
        result = fn(records)
        seeds = len({r.seed for r in records})
        body = (f"{budget}{result.verdict}\n\n{result.text}\n\nPer-seed results ({seeds} seeds): "
                f"[docs/results/{name}/{CSV_NAME}](docs/results/{name}/{CSV_NAME}); report "
                f"with plots: [docs/results/{name}/report.md](docs/results/{name}/report.md)"
                f"\n\n{regenerate(name)}")
        sections.append((title, body))
        print(f"## {title}\n\n{body}\n")
    source = "--from-csv" if args.from_csv else str(args.runs)
    header = (f"Command: `python benchmarks/paper_studies.py {source}"
              + (f" --only {args.only}" if args.only else "") + " --write`  \n"
              f"Machine: {platform.machine()}, 2 cores, torch {torch.__version__}  \n"
              f"Date: {dt.date.today().isoformat()}\n")
    if args.write and sections:
        for title, body in sections:
            if args.results.resolve() == RESULTS.resolve():  # BENCHMARKS.md: committed ones
                update_section(ROOT / "BENCHMARKS.md", title, header + "\n" + body)
        path = args.results / "README.md"
        write_text_atomic(path, readme(path, {
            title: header + "\n" + body.replace("docs/results/", "")
            for title, body in sections}))


if __name__ == "__main__":
    main()
