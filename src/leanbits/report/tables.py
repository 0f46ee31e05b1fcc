"""Terminal output: plain-text tables and the one-JSON-object ``--json`` printer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """Align ``rows`` under ``headers``; numbers right-aligned.

    Example:
        >>> print(table(["a", "b"], [[1, 2.5]]))
        a       b
        -  ------
        1  2.5000
    """
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
               if rows else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out += [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


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


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the contract of every ``--json`` flag)."""
    print(json.dumps(obj, sort_keys=True, default=float))
