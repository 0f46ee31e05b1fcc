"""Build a report: collect a run directory, assemble its sections, write Markdown + HTML.

The pieces: :mod:`.collect` reads the directory into training histories and
:class:`leanbits.results.Row` objects; :mod:`.training`, :mod:`.profile`, :mod:`.frontier`,
:mod:`.bits` and :mod:`.configuration` each turn them into blocks of a
:class:`.document.Report`; :mod:`.markdown` and :mod:`.html` render it; :mod:`.plots` draws
every figure.

Example:
    >>> result = build_report("runs/sweep-1")  # doctest: +SKIP
    >>> result.html  # doctest: +SKIP
    PosixPath('runs/sweep-1/report.html')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanbits import paths
from leanbits.errors import LeanbitsError
from leanbits.fileio import write_bytes_atomic, write_text_atomic
from leanbits.report.claims import STUDIES
from leanbits.report.collect import MAX_DEPTH, RESULTS_FILES, RunData, collect_all
from leanbits.report.configuration import configuration_section
from leanbits.report.document import Block, Heading, Note, Report, Text
from leanbits.report.frontier import frontier_section
from leanbits.report.html import to_html
from leanbits.report.markdown import to_markdown
from leanbits.report.overseeds import seeds_section
from leanbits.report.profile import drawable, profile_points, prune_section, pruned_models
from leanbits.report.seeds import CSV_NAME
from leanbits.report.training import name_runs, training_section

REPORT_MD = paths.report_markdown(Path()).name
REPORT_HTML = paths.report_html(Path()).name
#: figure file stems a report writes; stale ones from an earlier report are removed
FIGURE_NAMES = ("weights", "outputs", "loss", "prune_profile", "frontier", "error_weights",
                "sparsity", "bits")


def study_of(data: RunData, study: str | None = None) -> str | None:
    """The study whose verdicts the report states: ``study`` when given, else the root
    directory's name when it names one (``docs/results/snapshot``, ``runs/studies/snapshot``).

    Raises:
        LeanbitsError: ``study`` names no study.
    """
    if study is not None:
        if study not in STUDIES:
            raise LeanbitsError(f"--study {study}: unknown; valid: {', '.join(STUDIES)}")
        return study
    name = data.root.resolve().name
    return name if name in STUDIES else None


def make_report(data: RunData, study: str | None = None) -> Report:
    """Assemble the report's blocks from collected data (renders figures, writes nothing).

    Args:
        data: what :func:`.collect.collect` read.
        study: the study whose verdicts the results-over-seeds section states
            (:func:`study_of`).

    Raises:
        LeanbitsError: ``data`` holds nothing reportable, or ``study`` names no study.
    """
    if data.empty:
        raise LeanbitsError(
            f"{data.root}: nothing to report - no {paths.metrics_log(Path()).name} (snapshot), "
            f"{paths.profile(Path()).name} "
            f"(leanbits profile), {' / '.join(RESULTS_FILES)} (sweep) or {CSV_NAME} (a "
            "study's per-seed results) found within "
            f"{MAX_DEPTH} directory levels" + (f" ({'; '.join(data.notes)})"
                                               if data.notes else "")
        )
    notes = list(data.notes)
    name_runs(data.runs, data.results)
    report = Report("leanbits report: " + " + ".join(r.resolve().name for r in data.roots))
    what = []
    if data.runs:
        what.append(f"{len(data.runs)} training run(s)")
    if data.profile:
        what.append(f"{len(data.profile)} profile row(s)")
    if data.results:
        what.append(f"{len(data.results)} result row(s)")
    if data.records and not data.results:
        what.append(f"{len(data.records)} per-seed record(s)")
    # the path as given (relative stays relative: committed reports name no machine)
    report.blocks.append(Text(f"Source: {' + '.join(map(str, data.roots))} - "
                              + ", ".join(what) + "."))
    body: list[Block] = []
    name = study_of(data, study)
    body += seeds_section(data.records, data.records_source or "", *(
        STUDIES[name][::-1] if name else ()))
    if data.runs or data.results or data.profile:  # a results.csv alone has none of these
        body += _run_sections(data, notes)
    if notes:
        report.blocks.append(Heading("Notes"))
        report.blocks += [Note(n) for n in notes]
    report.blocks += body
    report.notes = notes
    return report


def _run_sections(data: RunData, notes: list[str]) -> list[Block]:
    """Training, pruning profile, frontier and configuration blocks of a run directory."""
    body = training_section(data.runs, notes)
    # Profile rows describe pruning best; else a sweep's rows reduced to one per pruned
    # model (its bit widths collapse); raw result rows only when neither has points.
    points = profile_points(data.profile) if data.profile else pruned_models(data.results)
    if not data.profile and not drawable(points):
        points = [(r.method, r) for r in data.results]
    source = paths.profile(Path()).name if data.profile else data.results_source
    body += prune_section(points, bool(data.profile), notes, source)
    # with per-seed records, the over-seeds section draws the frontier (seeds aggregated)
    seeds_frontier = any(r.get("total_bits") is not None for r in data.records)
    body += frontier_section(data.results or data.profile, notes, data.runs,
                             figure=not seeds_frontier,
                             source=data.results_source if data.results else source)
    return body + configuration_section(data.configs, data.runs, notes)


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...]
    sections: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"report_md": str(self.markdown), "report_html": str(self.html),
                "figures": [str(p) for p in self.figures], "sections": list(self.sections),
                "notes": list(self.notes)}


def write_report(report: Report, out_dir: str | os.PathLike[str]) -> ReportFiles:
    """Write ``report.md`` + ``figures/*.png`` and a self-contained ``report.html``.

    Every file is written atomically; figures first, so report.md never links a PNG that
    is not there yet.
    """
    out = Path(out_dir)
    written = []
    for fig in report.figures():
        p = paths.figure(out, fig.name)
        write_bytes_atomic(p, fig.png)
        written.append(p)
    produced = {f.name for f in report.figures()}
    for name in FIGURE_NAMES:  # a figure this report does not have must not linger
        if name not in produced:
            paths.figure(out, name).unlink(missing_ok=True)
    md, html = out / REPORT_MD, out / REPORT_HTML
    write_text_atomic(md, to_markdown(report))
    write_text_atomic(html, to_html(report))
    return ReportFiles(md, html, tuple(written), tuple(report.sections()), tuple(report.notes))


def build_report(run_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 out_dir: str | os.PathLike[str] | None = None,
                 study: str | None = None) -> ReportFiles:
    """Collect ``run_dir``, render every figure and write the report into ``out_dir``.

    Args:
        run_dir: a sweep run directory, a snapshot directory, a profile output directory or
            a directory holding a study's ``results.csv``; or several, reported as one
            (:func:`.collect.collect_all`: e.g. a sweep per network of a comparison).
        out_dir: where report.md, report.html and figures/ go (default: ``run_dir``, the
            first of several).
        study: the study whose verdicts to state (default: the directory's name, when it
            is one of :data:`leanbits.report.claims.STUDIES`).

    Returns:
        The paths written.

    Raises:
        LeanbitsError: ``run_dir`` is not a directory or holds nothing reportable, or
            ``out_dir`` is an existing file.
    """
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise LeanbitsError(f"--out {out_dir}: is an existing file, not a directory; give a "
                            "directory for report.md, report.html and figures/")
    roots = ([run_dir] if isinstance(run_dir, (str, os.PathLike)) else list(run_dir))
    report = make_report(collect_all(roots), study)
    return write_report(report, roots[0] if out_dir is None else out_dir)
