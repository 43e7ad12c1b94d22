"""How tables print for people: times as `2026-11-30 14:02:11 UTC (3 min ago)` (or RFC 3339 with
`--iso`), and columns fitted to the terminal's width (cells cut with `…`; `--json` has them whole).

`table` in cli/common.py calls these on cells already escaped (`printable`), so cutting a cell
never splits an escape sequence's meaning from view: a cut is marked.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

ISO_META = "keybrake.iso"
MIN_WIDTH = 8  # a column is never cut narrower than this (or its header)
_RFC3339_UTC = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?Z$")


def _remember_iso(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[ISO_META] = value
    return value


def iso_opt(fn: F) -> F:
    """The `--iso` flag of a command that prints a table: times as RFC 3339, as the API writes them."""
    return click.option(
        "--iso",
        is_flag=True,
        expose_value=False,
        callback=_remember_iso,
        help="Print times as RFC 3339 UTC (as the API writes them), not 'YYYY-MM-DD hh:mm:ss UTC (3 min ago)'.",
    )(fn)


def want_iso() -> bool:
    """Whether the running command was given `--iso` (False outside a click command)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(ISO_META))


def ago(seconds: float) -> str:
    """A signed age in words: `just now`, `3 min ago`, `in 2 h`, `5 days ago` (`seconds` > 0: past)."""
    s = abs(seconds)
    if s < 45:
        return "just now"
    if s < 3600:
        words = f"{round(s / 60)} min"
    elif s < 48 * 3600:
        words = f"{round(s / 3600)} h"
    else:
        words = f"{round(s / 86400)} days"
    return f"{words} ago" if seconds > 0 else f"in {words}"


def human_time(cell: str, now_s: float | None = None) -> str:
    """An RFC 3339 UTC cell as `YYYY-MM-DD hh:mm:ss UTC (age)`; any other cell unchanged."""
    m = _RFC3339_UTC.match(cell)
    if m is None:
        return cell
    when = dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{m.group(3) or ''}+00:00")
    now = time.time() if now_s is None else now_s
    return f"{m.group(1)} {m.group(2)} UTC ({ago(now - when.timestamp())})"


def terminal_width() -> int | None:
    """Columns to fit a table into when standard output is a terminal (`COLUMNS` when set, else
    the terminal's size); None otherwise: a pipe or a file gets whole cells, whatever `COLUMNS`
    says (many environments export it: test runners, CI, some shells)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def is_id_column(header: str) -> bool:
    """An id column (`id`, `…_id`): never cut, being the cell a person copies into the next command."""
    return header == "id" or header.endswith("_id")


def fit(widths: list[int], headers: list[str], total: int | None, gap: int = 2) -> list[int]:
    """Column widths (terminal columns) narrowed, widest first, until the line fits `total`
    columns (None: as they are); no column goes below MIN_WIDTH or its header's length, and an id
    column (`is_id_column`) keeps its whole width (the line wraps rather than cut one)."""
    out = list(widths)
    if total is None:
        return out
    floor = [w if is_id_column(h) else max(MIN_WIDTH, len(h)) for h, w in zip(headers, widths, strict=True)]
    while sum(out) + gap * (len(out) - 1) > total:
        i = max(range(len(out)), key=lambda j: out[j] - floor[j])
        if out[i] <= floor[i]:
            break  # as narrow as allowed: the line wraps
        out[i] -= 1
    return out


def char_width(c: str) -> int:
    """Terminal columns one character takes: 2 for East Asian wide and full-width ones, 0 for a
    combining mark or a zero-width format character, else 1."""
    if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def width(text: str) -> int:
    """Terminal columns `text` takes (`char_width` of each character)."""
    return sum(char_width(c) for c in text)


def cut(text: str, cols: int) -> str:
    """`text` within `cols` terminal columns, a cut marked with `…` (a wide character that would
    straddle the edge goes whole)."""
    if width(text) <= cols:
        return text
    out, used = [], 0
    for c in text:
        w = char_width(c)
        if used + w > cols - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def pad(text: str, cols: int) -> str:
    """`text` filled with spaces to `cols` terminal columns."""
    return text + " " * max(cols - width(text), 0)
