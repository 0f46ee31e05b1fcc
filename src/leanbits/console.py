"""Console output shared by every command: number formatting (:func:`fmt`), plain-text
tables (:func:`table`) and the one-JSON-object printer behind every ``--json`` flag
(:func:`emit_json`). The Markdown report formats its cells with the same :func:`fmt`, so a
number reads the same on the terminal and in a report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """One value as text: ints with thousands separators, floats with ``digits`` decimals
    (scientific when very large or small), None as ``-``.

    Example:
        >>> fmt(1234567), fmt(0.5), fmt(2e-5), fmt(None)
        ('1,234,567', '0.5000', '2.000e-05', '-')
    """
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


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the contract of every ``--json`` flag)."""
    print(json.dumps(obj, sort_keys=True, default=float))
