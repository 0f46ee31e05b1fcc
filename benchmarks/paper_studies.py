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
the others are kept as they were. Written from runs, each study also commits its run's
effective ``experiment.toml`` (after ``--quick`` / ``--set``) beside its results.csv, and
its section names the command that reruns exactly that (``leanbits run
docs/results/<name>/experiment.toml``), with the study's preset command as a second
pointer when it is the same experiment, or one line saying what differs. The README opens
with the verdicts at a glance: one row per claim part of every study (studies not
recomputed this time from their committed CSV; a study without one is "not measured under
the current protocol"). The claim-4 section also states the budget of every pruning
method (:func:`leanbits.report.claims.baseline_budgets`), read from the run's
``experiment.toml`` (the committed one with ``--from-csv``), else from the shipped preset.
Written from runs, each study also commits ``cost.json``: its stages and the seconds each
took (``stage.json``), summed per kind; the README's "Compute" table reads them back.
Every verdict's criterion is a constant in ``leanbits/report/claims/criteria.py`` fixed
before the studies run; tables show mean ± std over seeds and 95 % CIs of differences
paired by seed; every choice (cutoff, fewest bits at a level, most prunable) is made on validation.

The runs: `leanbits study NAME --out runs/studies/NAME --jobs 2` for explosion,
regularization, snapshot and (the frontier preset) frontier-mnist: LeNet-300-100 with 3
heads x 5 seeds and LeNet-5 with the llr head x 3 seeds in one grid (the preset's exclude
rules); frontier-fashion once more with `--set data.dataset=fashion-mnist --set
train.epochs=12 --set train.lr=0.02`. Each run directory keeps the effective
experiment.toml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_md import sections as md_sections  # noqa: E402
from _bench_md import update_section  # noqa: E402

from leanbits import paths  # noqa: E402
from leanbits.errors import LeanbitsError  # noqa: E402
from leanbits.fileio import write_bytes_atomic, write_text_atomic  # noqa: E402
from leanbits.report.build import build_report  # noqa: E402
from leanbits.report.claims import (  # noqa: E402
    BUDGETED_STUDIES,
    STUDIES,
    Finding,
    StudyResult,
    baseline_budgets,
    criteria_text,
    md_table,
)
from leanbits.report.seeds import (  # noqa: E402
    CSV_NAME,
    SeedRecord,
    read_csv,
    records_of_run,
    write_csv,
)
from leanbits.snapshot.files import read_json  # noqa: E402
from leanbits.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED  # noqa: E402
from leanbits.sweep.experiment import differences, load_experiment, study_path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
_FASHION = ("data.dataset=fashion-mnist", "train.epochs=12", "train.lr=0.02")
#: study name -> (preset, --set overrides): the command meant to run it from scratch
STUDY_PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "explosion": ("explosion", ()),
    "regularization": ("regularization", ()),
    "snapshot": ("snapshot", ()),
    "frontier-mnist": ("frontier", ()),
    "frontier-fashion": ("frontier", _FASHION),
}
#: the name of a run's effective experiment file, committed beside its results.csv
EXPERIMENT = paths.experiment(Path()).name
#: what a study's run cost (stage counts and seconds), committed beside its results.csv
COST = "cost.json"
#: stage kinds a study's results rows name, in run order
COST_KINDS = ("train", "prune", "bits")
#: differing settings a regenerate line names before "and N more"
SHOWN_DIFFERENCES = 3
NOT_MEASURED = "not measured under the current protocol"
VERDICT_ORDER = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)


def shown(path: Path) -> str:
    """A path as commands in the docs give it: from the repository root when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def preset_command(name: str) -> str:
    """``leanbits study PRESET ...`` into runs/studies/<name> (see :data:`STUDY_PRESETS`)."""
    preset, sets = STUDY_PRESETS[name]
    return (f"leanbits study {preset} --out runs/studies/{name} --jobs 2"
            + "".join(f" --set {shlex.quote(s)}" for s in sets))


def rerun(name: str, experiment: Path | None) -> str:
    """The command that runs run directory ``name`` again: by the run's own experiment file
    when there is one (and by the preset command when that is the same experiment, else
    what differs), by the preset command otherwise."""
    if experiment is None:
        return (f"`{preset_command(name)}` (the study's preset command: no {EXPERIMENT} "
                "was committed with this CSV, so the run may have differed)")
    preset, sets = STUDY_PRESETS[name]
    diff = differences(load_experiment(experiment),
                       load_experiment(study_path(preset), overrides=sets), "that command")
    first = (f"`leanbits run {shown(experiment)} --out runs/studies/{name} --jobs 2` "
             "(the run's own experiment; ")
    if not diff:
        return first + f"the same as `{preset_command(name)}`)"
    more = len(diff) - SHOWN_DIFFERENCES
    return (first + f"`{preset_command(name)}` differs: " + "; ".join(diff[:SHOWN_DIFFERENCES])
            + (f"; and {more} more settings" if more > 0 else "") + ")")


def regenerate(name: str, experiment: Path | None) -> str:
    """How a study's section is made again: its run by :func:`rerun`; then from the runs,
    or from the CSV."""
    return (f"Regenerate: {rerun(name, experiment)}, then `python benchmarks/paper_studies.py "
            "runs/studies --write` (every study found there); from the committed CSV, "
            f"without training: `python benchmarks/paper_studies.py --from-csv --only {name}`.")


BUDGET_PRICE = ("The price of each budget - accuracy against backprop epochs at 0.9 / 0.95 "
                "/ 0.98 sparsity for re-fit, fine-tune, iterative and rewind - is measured "
                "by `benchmarks/baseline_budget.py`.")


def budgets(name: str, experiment: Path | None) -> str:
    """The budgets paragraph of a study of ``BUDGETED_STUDIES``: from the run's effective
    experiment file when there is one, else from the shipped preset of that name."""
    if experiment is None:
        exp = load_experiment(study_path(name))
        source = f"`leanbits/sweep/studies/{name}.toml`"
    else:
        exp = load_experiment(experiment)
        source = f"`{shown(experiment)}`"
    return f"{baseline_budgets(exp, source)} {BUDGET_PRICE}"


def anchor(title: str) -> str:
    """The fragment a Markdown heading gets on GitHub (lower case, punctuation dropped,
    spaces as hyphens)."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def verdict_cell(f: Finding) -> str:
    """A finding's verdict, and where its parts differ, which parts gave which verdict."""
    words = sorted(dict.fromkeys(b.verdict for b in f.by),
                   key=lambda w: VERDICT_ORDER.index(w) if w in VERDICT_ORDER else 3)
    if len(words) < 2:
        return f.verdict
    return f"{f.verdict} (" + "; ".join(
        f"{w}: {', '.join(b.part for b in f.by if b.verdict == w)}" for w in words) + ")"


def glance(results: dict[str, tuple[StudyResult, int] | None]) -> str:
    """The verdicts at a glance: one row per claim part of every study of ``STUDIES``
    (``results``: ``{name: (result, seeds)}``, None for a study not measured), each
    linking to its section."""
    rows, last = [], None
    for name, (title, _fn) in STUDIES.items():
        link = f"[{name}](#{anchor(title)})"
        got = results.get(name)
        if got is None:
            rows.append([title, "-", NOT_MEASURED, "-", "-", link])
            last = None
            continue
        result, seeds = got
        for f in result.findings:
            claim = f"{f.claim}: {f.statement}"
            rows.append(["" if claim == last else claim, f.part, verdict_cell(f),
                         f.diff or "-", f.seeds or seeds, link])
            last = claim
    return ("One row per claim part, computed with the sections below from the same "
            "per-seed results; differences are paired by seed, with their 95 % CI (pt: "
            "accuracy points). A verdict that needs several parts lists which gave which. "
            f"A study whose section has no per-seed results ({CSV_NAME}) is "
            f"{NOT_MEASURED}.\n\n" + md_table(
                ["claim", "part", "verdict", "paired difference [95 % CI]", "seeds",
                 "section"], rows))


def readme(path: Path, new: dict[str, str], overview: str, compute: str = "") -> str:
    """docs/results/README.md: the verdicts at a glance (``overview``), what the studies
    cost (``compute``, when known), the criteria, then
    one section per study in ``STUDIES`` order - the ones in ``new`` (``{title: body}``)
    as given, every other one as ``path`` has it (so ``--only`` keeps them)."""
    old = md_sections(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out = ["# What our measurements say about the paper's claims", "",
           "Each section is written by `benchmarks/paper_studies.py` from the study's "
           f"per-seed results (`<study>/{CSV_NAME}`; `--from-csv` recomputes every verdict "
           "from them without training), and says by which command, where and when; "
           "`--only` rewrites the named studies' sections and keeps the others. The report "
           "beside each study has the plots.", "",
           "## Verdicts at a glance", "", overview, "",
           *(["## Compute", "", compute, ""] if compute else []),
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


def section(name: str, result: StudyResult, seeds: int, budget: str,
            experiment: Path | None, links: str) -> str:
    """A study's section body; ``links``: the prefix of its files' links."""
    where = f"{links}{name}"
    low = min((f.seeds for f in result.findings if f.seeds), default=seeds)
    count = f"{low}-{seeds} seeds" if low < seeds else f"{seeds} seeds"
    return (f"{budget}{result.verdict}\n\n{result.text}\n\nPer-seed results ({count}): "
            f"[{where}/{CSV_NAME}]({where}/{CSV_NAME}); report with plots: "
            f"[{where}/report.md]({where}/report.md)\n\n"
            f"{regenerate(name, experiment)}")


def measured(records: Sequence[SeedRecord],
             fn: Callable[[Sequence[SeedRecord]], StudyResult]) -> tuple[StudyResult, int]:
    """A study's result and its number of seeds."""
    return fn(records), len({r.seed for r in records})


def run_cost(run: Path) -> dict[str, dict[str, float]] | None:
    """What a finished run's stages cost: ``{"stages": {kind: count}, "seconds": {kind:
    sum}}`` over the distinct stages its rows use, each stage's wall time as its
    ``stage.json`` records it (the stage alone; a stage reused from an earlier run counts
    with the time it took then). None, said on stderr, when a stage's record is missing
    (the sum would understate the cost)."""
    doc = read_json(paths.results(run))
    used: dict[str, set[str]] = {k: set() for k in COST_KINDS}
    for row in doc.get("rows", []) if isinstance(doc, dict) else []:
        for kind, rel in (row.get("stages") or {}).items():
            if kind in used and isinstance(rel, str):
                used[kind].add(rel)
    seconds = {}
    for kind, rels in used.items():
        total = 0.0
        for rel in sorted(rels):
            marker = paths.stage_marker(paths.stages(run) / rel)
            got = read_json(marker).get("seconds") if marker.is_file() else None
            if not isinstance(got, int | float):
                print(f"paper_studies: {run.name}: compute not counted - {marker} records "
                      "no seconds", file=sys.stderr)
                return None
            total += got
        seconds[kind] = round(total, 1)
    return {"stages": {k: len(v) for k, v in used.items()}, "seconds": seconds}


def read_cost(path: Path) -> dict[str, dict[str, float]] | None:
    """A committed :data:`COST` file (None: there is none)."""
    if not path.is_file():
        return None
    doc = read_json(path)
    if not (isinstance(doc, dict) and isinstance(doc.get("stages"), dict)
            and isinstance(doc.get("seconds"), dict)):
        raise LeanbitsError(f"{path}: not a cost file (stages and seconds per kind)")
    return doc


def cost_table(costs: dict[str, dict[str, dict[str, float]] | None]) -> str:
    """The compute of every study whose cost is known: stages and stage-hours per kind."""
    rows = []
    for name, cost in costs.items():
        if cost is None:
            continue
        n, sec = cost["stages"], cost["seconds"]
        total = sum(sec.values()) / 3600
        rows.append([name, *(f"{n.get(k, 0):,} / {sec.get(k, 0) / 3600:.2f}"
                             for k in COST_KINDS), f"{total:.2f}", f"{total / 2:.1f}"])
    if not rows:
        return ""
    total = sum(float(r[-2]) for r in rows)
    return ("Compute per study: each stage's wall time as its stage.json records it, summed "
            "(stage-hours). A stage runs on one thread, and `--jobs 2` runs two at a time "
            "on the 2 cores, so a study's wall time there is about half its stage-hours; "
            "the runs shared the machine with other work at times, so these are upper "
            "bounds. "
            f"All studies: {total:.1f} stage-hours, about {total / 2:.1f} hours on 2 "
            "cores.\n\n" + md_table(
                ["study", *(f"{k} stages / hours" for k in COST_KINDS), "stage-hours",
                 "hours at --jobs 2 (about)"], rows))


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
    sections: list[tuple[str, str, str]] = []  # (title, body for BENCHMARKS, for README)
    results: dict[str, tuple[StudyResult, int] | None] = {}
    costs: dict[str, dict[str, dict[str, float]] | None] = {}
    for name, (title, fn) in STUDIES.items():
        csv_path = args.results / name / CSV_NAME
        committed = args.results / name / EXPERIMENT
        try:
            costs[name] = read_cost(args.results / name / COST)  # a run read below replaces it
            if only and name not in only or args.from_csv:
                if not csv_path.is_file():
                    results[name] = None
                    continue
                records = read_csv(csv_path)
                if only and name not in only:  # for the overview only
                    results[name] = measured(records, fn)
                    continue
                experiment = committed if committed.is_file() else None
            else:
                run = args.runs / name
                if not paths.results(run).is_file():
                    results[name] = (measured(read_csv(csv_path), fn) if csv_path.is_file()
                                     else None)
                    continue
                records = records_of_run(run)
                experiment = paths.experiment(run)
                experiment = experiment if experiment.is_file() else None
                costs[name] = run_cost(run)
                if args.write:
                    build_report(run, out_dir=args.results / name, study=name)
                    write_csv(csv_path, records)
                    if costs[name] is None:  # a stale one would be another run's
                        (args.results / name / COST).unlink(missing_ok=True)
                    else:
                        write_text_atomic(args.results / name / COST,
                                          json.dumps(costs[name], indent=1) + "\n")
                    if experiment is None:  # a stale one would name another run
                        committed.unlink(missing_ok=True)
                    else:
                        write_bytes_atomic(committed, experiment.read_bytes())
                        experiment = committed
            budget = budgets(name, experiment) + "\n\n" if name in BUDGETED_STUDIES else ""
            result, seeds = results[name] = measured(records, fn)
            bench = section(name, result, seeds, budget, experiment, "docs/results/")
        except LeanbitsError as exc:
            sys.exit(f"paper_studies: {exc}")
        sections.append((title, bench, section(name, result, seeds, budget, experiment, "")))
        print(f"## {title}\n\n{bench}\n")
    source = "--from-csv" if args.from_csv else str(args.runs)
    header = (f"Command: `python benchmarks/paper_studies.py {source}"
              + (f" --only {args.only}" if args.only else "") + " --write`  \n"
              f"Machine: {platform.machine()}, 2 cores, torch {torch.__version__}  \n"
              f"Date: {dt.date.today().isoformat()}\n")
    overview = glance(results)
    compute = cost_table(costs)
    print(f"## Verdicts at a glance\n\n{overview}\n\n{compute}\n")
    if args.write and sections:
        for title, bench, _body in sections:
            if args.results.resolve() == RESULTS.resolve():  # BENCHMARKS.md: committed ones
                update_section(ROOT / "BENCHMARKS.md", title, header + "\n" + bench)
        path = args.results / "README.md"
        write_text_atomic(path, readme(path, {title: header + "\n" + body
                                              for title, _bench, body in sections}, overview,
                                       compute))


if __name__ == "__main__":
    main()
