"""The report as a document: a title and a list of blocks, before any rendering.

Section builders (:mod:`.training`, :mod:`.profile`, :mod:`.frontier`, :mod:`.bits`) make
blocks; :mod:`.markdown` and :mod:`.html` render them. A :class:`Figure` already holds its
PNG bytes, so rendering writes nothing and draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Note:
    """Something the reader should know (a skipped section, an unreadable file)."""

    text: str


@dataclass(frozen=True)
class Figure:
    name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str | None = None


@dataclass(frozen=True)
class Code:
    text: str
    language: str = ""
    title: str | None = None


Block = Heading | Text | Note | Figure | Table | Code


@dataclass
class Report:
    """A report as blocks, rendered to Markdown by :func:`leanbits.report.markdown.to_markdown`
    and to HTML by :func:`leanbits.report.html.to_html`."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]

    def sections(self) -> list[str]:
        return [b.text for b in self.blocks if isinstance(b, Heading) and b.level == 2]
