"""Render a :class:`leanbits.report.document.Report` as one self-contained HTML page.

Every figure is embedded as a ``data:image/png;base64`` URI and the CSS is inline, so the
file opens offline, can be mailed or attached to an issue as is. A Content-Security-Policy
forbids every external load (and scripts): if a later change ever referenced an outside
resource, the browser would refuse it and say so on the console, which the tests watch.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from typing import Any

from leanbits.console import fmt
from leanbits.report.document import Code, Figure, Heading, Note, Report, Table, Text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #222; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #eee; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
nav ul { columns: 2; padding-left: 1.2em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .92em; margin-top: .3em; }
.table { overflow-x: auto; margin: .6em 0 1.2em; }
table { border-collapse: collapse; font-size: .88em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { padding: .2em .6em; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f6f6f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em;
        margin: .4em 0; }
summary { cursor: pointer; font-weight: 600; margin: .4em 0; }
"""


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 1
    while slug in used:
        n += 1
        slug = f"{base}-{n}"
    used.add(slug)
    return slug


def data_uri(png: bytes) -> str:
    """``png`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None) -> str:
    e = html.escape
    out = ['<div class="table"><table>']
    if title:
        out.append(f"<caption>{e(title)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in headers)
               + "</tr></thead><tbody>")
    for r in rows:
        cells = "".join(f'<td class="num">{e(fmt(v))}</td>' if _is_num(v)
                        else f"<td>{e(fmt(v))}</td>" for v in r)
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escaped text with Markdown's ``**bold**`` as ``<strong>`` (verdicts are written so)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def to_html(report: Report) -> str:
    """The report as a complete HTML5 document with no external references.

    Example:
        >>> page = to_html(Report("r", [Heading("A"), Text("x < y")]))
        >>> "x &lt; y" in page and "<script" not in page
        True
    """
    e = html.escape
    used: set[str] = set()
    body: list[str] = []
    toc: list[str] = []
    codes = 0
    for b in report.blocks:
        if isinstance(b, Heading):
            anchor = _slug(b.text, used)
            level = min(6, b.level)
            body.append(f'<h{level} id="{anchor}">{e(b.text)}</h{level}>')
            if b.level == 2:
                toc.append(f'<li><a href="#{anchor}">{e(b.text)}</a></li>')
        elif isinstance(b, Text):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Note):
            body.append(f'<p class="note">{e(b.text)}</p>')
        elif isinstance(b, Figure):
            body.append(f'<figure id="fig-{e(b.name)}"><img src="{data_uri(b.png)}" '
                        f'alt="{e(b.caption)}"><figcaption>{e(b.caption)}</figcaption>'
                        "</figure>")
        elif isinstance(b, Table):
            body.append(_table(b.headers, b.rows, b.title))
        elif isinstance(b, Code):
            # Folded (the first one open): a sweep holds one config per trained network,
            # and the page should stay readable.
            title = e(b.title or "config")
            body.append(f"<details{' open' if not codes else ''}><summary>{title}</summary>"
                        f"<pre><code>{e(b.text)}</code></pre></details>")
            codes += 1
    nav = f'<nav><ul>{"".join(toc)}</ul></nav>' if toc else ""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(report.title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body>",
        f"<h1>{e(report.title)}</h1>",
        nav,
        *body,
        "</body></html>",
        "",
    ])
