"""Reports: Markdown tables (:mod:`.tables`), figures (:mod:`.plots`), and the Markdown /
self-contained HTML report of a run directory or of a study's committed ``results.csv``.
:mod:`.build` drives it: :mod:`.collect` reads the run into rows and per-seed records
(:mod:`.seeds`), one module per section (:mod:`.overseeds`, :mod:`.training`,
:mod:`.profile`, :mod:`.frontier`, :mod:`.bits`, :mod:`.configuration`) makes blocks of a
:mod:`.document`, and :mod:`.markdown` / :mod:`.html` render it. :mod:`.claims` holds the
studies' verdicts.

Nothing heavy is imported here: matplotlib loads only when a figure is drawn.
"""

from leanbits.report.build import build_report

__all__ = ["build_report"]
