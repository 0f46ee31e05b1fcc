"""Replace one ``## Section`` of BENCHMARKS.md, keeping the others (atomic write)."""

from __future__ import annotations

import re
from pathlib import Path

from leanbits.fileio import write_text_atomic

HEADER = (
    "# leanbits benchmarks\n\nEvery table is written by a script in `benchmarks/`; the command,"
    " machine and date\nare given with it. Re-run the command to refresh a section.\n"
)


def update_section(path: Path, title: str, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(block + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    write_text_atomic(path, text)
