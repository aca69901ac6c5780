"""Self-contained HTML pages for research reports: PNGs inlined as data URIs, no script,
no CDN, so a report opens offline and can be mailed as one file."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
         "padding:3px 9px;text-align:right}td:first-child,th:first-child{text-align:left}"
         ".verdict{font-size:1.15em;padding:.6em 1em;border-left:5px solid #c60;"
         "background:#fff4e6}.ok{border-color:#393;background:#eef8ee}img{max-width:100%}")


def png_tag(path: Path, alt: str) -> str:
    """An <img> carrying the PNG itself (base64)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></p>'


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                     for row in rows)
    return f"<table><tr>{head}</tr>\n{body}\n</table>"


def write_page(path: Path, title: str, parts: Iterable[str]) -> None:
    """One page: the title, then each part (already HTML) in order."""
    t = html.escape(title)
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{t}</title><link rel="icon" href="data:,">
<style>{STYLE}</style></head><body>
<h1>{t}</h1>
{chr(10).join(parts)}
</body></html>
""", encoding="utf-8")
