"""Render a :class:`leanbits.report.document.Report` as Markdown (figures linked as PNGs)."""

from __future__ import annotations

from pathlib import Path

from leanbits import paths
from leanbits.report.document import Code, Figure, Heading, Note, Report, Table, Text
from leanbits.report.tables import markdown_table

#: where figures are linked from, relative to the Markdown file
FIGURES_DIR = paths.figures(Path()).name


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text`` (so it cannot end early)."""
    ticks, run = 3, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        ticks = max(ticks, run + 1)
    return "`" * ticks


def to_markdown(report: Report, figures_dir: str = FIGURES_DIR) -> str:
    """Render ``report`` as Markdown; figures are linked as ``figures_dir/<name>.png``.

    Example:
        >>> print(to_markdown(Report("r", [Heading("A"), Text("x")])))
        # r
        <BLANKLINE>
        ## A
        <BLANKLINE>
        x
        <BLANKLINE>
    """
    out = [f"# {report.title}", ""]
    for b in report.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Text):
            out += [b.text, ""]
        elif isinstance(b, Note):
            out += [f"> **Note:** {b.text}", ""]
        elif isinstance(b, Figure):
            out += [f"![{b.name}]({figures_dir}/{b.name}.png)", "", f"*{b.caption}*", ""]
        elif isinstance(b, Table):
            if b.title:
                out += [f"**{b.title}**", ""]
            out += [markdown_table(b.headers, b.rows), ""]
        elif isinstance(b, Code):
            fence = _fence(b.text)
            if b.title:
                out += [f"**{b.title}**", ""]
            out += [fence + b.language, b.text.rstrip("\n"), fence, ""]
    return "\n".join(out)
