"""Reports: terminal tables (:mod:`.tables`), figures (:mod:`.plots`), and the Markdown /
self-contained HTML report of a run directory. :mod:`.build` drives it: :mod:`.collect`
reads the run into rows, one module per section (:mod:`.training`, :mod:`.profile`,
:mod:`.frontier`, :mod:`.bits`) makes blocks of a :mod:`.document`, and :mod:`.markdown` /
:mod:`.html` render it.

Nothing heavy is imported here: matplotlib loads only when a figure is drawn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def build_report(run_dir: Any, out_dir: Any = None) -> Any:
    """See :func:`leanbits.report.build.build_report`."""
    from leanbits.report.build import build_report as _build

    return _build(run_dir, out_dir)
