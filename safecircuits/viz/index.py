"""An ``index.html`` that links the pages written into one output directory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from safecircuits.errors import InputError, MissingFileError
from safecircuits.viz._html import esc, page_html, write_atomic

__all__ = ["write_index"]

_EXTRA_CSS = """
ul.pages{list-style:none;padding:0} ul.pages li{margin:.8em 0;padding:.6em 1em;border:1px solid #ddd;border-radius:6px}
ul.pages a{font-size:1.15em;font-weight:600} ul.pages .desc{margin:.2em 0 0} ul.pages .meta{margin-left:.6em}
"""


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{max(n, 1) / 1e3:.0f} kB"


def write_index(out_dir: str | Path, pages: Sequence[tuple[str, str, str]], title: str = "safecircuits results",
                filename: str = "index.html") -> Path:
    """Write ``out_dir/index.html``: one entry per ``(filename, title, description)`` in ``pages``,
    a relative link (so the folder can be moved or zipped) with its one-line description and size.

    Every page must exist in ``out_dir`` (:class:`~safecircuits.errors.MissingFileError` otherwise)
    and be a plain file name inside it (no folders outside ``out_dir``). Returns the index's path.
    """
    out_dir = Path(out_dir)
    if not pages:
        raise InputError("write_index needs at least one page")
    items = []
    for entry in pages:
        if len(entry) != 3:
            raise InputError(f"each page is (filename, title, description), got {entry!r}")
        name, page_title, desc = entry
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"page {name!r} must be a path inside {out_dir}")
        if not (out_dir / rel).is_file():
            raise MissingFileError(f"page {name!r} does not exist in {out_dir}")
        items.append(
            f'<li><a href="{esc(rel.as_posix())}">{esc(page_title)}</a><span class="meta">{esc(rel.as_posix())} · '
            f"{_size((out_dir / rel).stat().st_size)}</span><p class=\"desc\">{esc(desc)}</p></li>"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f'<p class="meta">{len(items)} page(s) · generated {stamp} by safecircuits · every page works offline</p>\n'
            f'<ul class="pages">{"".join(items)}</ul>')
    return write_atomic(out_dir / filename, page_html(title, body, extra_css=_EXTRA_CSS, plotly=False))
