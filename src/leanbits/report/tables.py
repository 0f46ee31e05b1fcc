"""Markdown tables of the report (cells formatted by :func:`leanbits.console.fmt`, as on
the terminal), and Markdown text with tables read back into report blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leanbits.console import fmt
from leanbits.report.document import Table, Text


def _md_cell(value: Any) -> str:
    # A pipe would end the cell and a newline the row: escape / flatten them.
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned, cells via :func:`fmt`.

    Example:
        >>> print(markdown_table(["a", "b"], [["x", 2.5]]))
        | a | b |
        |:--|--:|
        | x | 2.5000 |
    """
    numeric = [bool(rows) and all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                                  or r[i] is None for r in rows)
               for i in range(len(headers))]
    out = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
           "|" + "|".join("--:" if num else ":--" for num in numeric) + "|"]
    out += ["| " + " | ".join(_md_cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table line (``\\|`` is a pipe inside a cell)."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    cells, cur, i = [], "", 0
    while i < len(inner):
        if inner[i] == "\\" and inner[i + 1:i + 2] == "|":
            cur, i = cur + "|", i + 2
            continue
        if inner[i] == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += inner[i]
        i += 1
    return [*cells, cur.strip()]


def markdown_blocks(text: str) -> list[Text | Table]:
    """Markdown made of paragraphs and tables (what :mod:`leanbits.report.claims` writes) as
    report blocks, so the HTML report shows them as tables too.

    Example:
        >>> markdown_blocks("**A.** b\\n\\n| x | y |\\n|---|---|\\n| 1 | 2 |")
        [Text(text='**A.** b'), Table(headers=['x', 'y'], rows=[['1', '2']], title=None)]
    """
    out: list[Text | Table] = []
    for para in (p.strip("\n") for p in text.split("\n\n")):
        lines = [ln for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        if len(lines) >= 2 and all(ln.lstrip().startswith("|") for ln in lines):
            body = [ln for ln in lines[1:] if not set(ln.strip()) <= set("|-: ")]
            out.append(Table(_cells(lines[0]), [_cells(ln) for ln in body]))
        else:
            out.append(Text(para.strip()))
    return out
