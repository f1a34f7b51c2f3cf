"""Shared pieces of the HTML pages: escaping, the stylesheet, figure embedding, a small markdown
table renderer, the page skeleton (plotly.js embedded once, no CDN) and the atomic write."""

from __future__ import annotations

import html
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1300px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.prov{border-collapse:collapse;font-size:.9em;margin:.5em 0 1em}
table.prov th{text-align:left;padding:.2em .8em .2em 0;color:#555;font-weight:600;vertical-align:top}
table.prov td{padding:.2em .8em;font-family:ui-monospace,monospace}
table.data{border-collapse:collapse;font-size:.9em;margin:.4em 0 1.2em}
table.data th,table.data td{border:1px solid #ddd;padding:.3em .7em;text-align:right}
table.data th{background:#f5f5f5} table.data td:first-child,table.data th:first-child{text-align:left;font-weight:600}
table.data tbody tr:nth-child(even){background:#fafafa}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em;margin:1em 0}
.meta{color:#777;font-size:.85em} p.comps{font-family:ui-monospace,monospace;font-size:.8em;word-break:break-word}
nav a{margin-right:1em}
"""


def esc(s: Any) -> str:
    """HTML-escape ``str(s)`` (quotes included)."""
    return html.escape(str(s), quote=True)


def fig_html(fig: go.Figure) -> str:
    """A ``<div>`` with the figure (no plotly.js: the page embeds it once), as wide as the page."""
    h = fig.layout.height or 450
    return fig.to_html(
        full_html=False, include_plotlyjs=False, default_width="100%", default_height=f"{int(h)}px",
        config={"displaylogo": False, "responsive": True},
    )


def _inline(text: str) -> str:
    """Escape, then turn ``**bold**`` and ``*emphasis*`` / `` `code` `` into tags."""
    s = esc(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_html(md: str) -> str:
    """Render the markdown the benchmark tables use: pipe tables (header row, ``|---|`` separator),
    lines that are only ``**bold**`` (as headings) and plain paragraphs; everything escaped."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
            continue
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            rows = [_cells(r) for r in block if not re.fullmatch(r"\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?", r)]
            has_head = len(block) > 1 and re.fullmatch(r"[\s|:-]+", block[1]) is not None
            head, body = (rows[0], rows[1:]) if has_head and rows else ([], rows)
            thead = "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead>" if head else ""
            tbody = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append(f'<table class="data">{thead}<tbody>{tbody}</tbody></table>')
            continue
        para = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith("|"):
            para.append(lines[i].strip())
            i += 1
        text = " ".join(para)
        m = re.fullmatch(r"\*\*(.+?)\*\*(.*)", text)
        if m and len(para) == 1:
            out.append(f"<h3>{_inline(m.group(1))}<span class=\"meta\">{_inline(m.group(2))}</span></h3>")
        else:
            out.append(f"<p>{_inline(text)}</p>")
    return "\n".join(out)


def page_html(title: str, body: str, extra_css: str = "", plotly: bool = True) -> str:
    """A complete offline page: ``<title>``/``<h1>`` (escaped here), the stylesheet, plotly.js once
    (when ``plotly``) and ``body`` (inserted verbatim: the caller escapes it)."""
    js = (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
    ) if plotly else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}{extra_css}</style>\n{js}</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (ordinary permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
