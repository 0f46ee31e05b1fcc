"""Markdown files made of ``## Section`` blocks: replace one section of BENCHMARKS.md,
keeping the others (atomic write), and read a file's sections back."""

from __future__ import annotations

import re
from pathlib import Path

from leanbits.fileio import write_text_atomic

HEADER = (
    "# leanbits benchmarks\n\nEvery table is written by a script in `benchmarks/`; the command,"
    " machine and date\nare given with it. Re-run the command to refresh a section.\n"
)


#: one ``## title`` line and everything up to the next one (or the end)
_SECTION = re.compile(r"^## (?P<title>[^\n]*)\n(?P<body>.*?)(?=^## |\Z)", re.S | re.M)


def sections(text: str) -> dict[str, str]:
    """``{title: body}`` of every ``## title`` section of a Markdown text, in order; the
    body without its surrounding blank lines. Text before the first section is not one.

    Example:
        >>> sections("# T\\n\\nintro\\n\\n## A\\n\\none\\n\\n## B\\ntwo\\n")
        {'A': 'one', 'B': 'two'}
    """
    return {m["title"]: m["body"].strip("\n") for m in _SECTION.finditer(text)}


def update_section(path: Path, title: str, body: str) -> None:
    """Replace (or append) the section ``title`` of the Markdown file ``path``."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(block + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    write_text_atomic(path, text)


def publish(body: str, title: str, write: bool) -> None:
    """Print a benchmark's section; with ``write``, also put it into the repository's
    BENCHMARKS.md as the section ``title``."""
    print(body)
    if write:
        update_section(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", title, body)
