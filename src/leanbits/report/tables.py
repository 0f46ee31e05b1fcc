"""Markdown tables of the report; cells are formatted by :func:`leanbits.console.fmt`, as on
the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leanbits.console import fmt


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
