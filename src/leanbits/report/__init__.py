"""Reports: Markdown tables (:mod:`.tables`), figures (:mod:`.plots`), and the Markdown /
self-contained HTML report of a run directory. :mod:`.build` drives it: :mod:`.collect`
reads the run into rows, one module per section (:mod:`.training`, :mod:`.profile`,
:mod:`.frontier`, :mod:`.bits`) makes blocks of a :mod:`.document`, and :mod:`.markdown` /
:mod:`.html` render it.

Nothing heavy is imported here: matplotlib loads only when a figure is drawn.
"""

from leanbits.report.build import build_report

__all__ = ["build_report"]
