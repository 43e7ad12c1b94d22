"""What every operator command shares: settings, opening the store, printing, validation.

Operator commands open the store directly (same data dir / database URL and master key as the
server), so they work whether or not a server is running and need no admin token.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import simplejson
from pydantic import BaseModel, ValidationError

from keybrake.admin import keys as key_ops
from keybrake.admin.errors import ApiError
from keybrake.cli import tables
from keybrake.cli.datadir import require_data_dir
from keybrake.cli.tables import cut, fit, human_time, pad, want_iso, width
from keybrake.config import Settings, SettingsError, from_env, unknown_settings, with_configured_vendors
from keybrake.crypto import MasterKeyError
from keybrake.runtime import Runtime, open_runtime
from keybrake.store.migrate import SchemaError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

data_dir_opt = click.option(
    "--data-dir", envvar="KEYBRAKE_DATA_DIR", default=None, help="Data directory (default ./keybrake-data)."
)


def settings_for(data_dir: str | None) -> Settings:
    """The server's settings from the environment, with `--data-dir` (a path, or None) applied.

    Raises click.ClickException (exit 1) naming the bad environment variable; a `KEYBRAKE_*`
    variable that is no setting is named in a warning on standard error.
    """
    try:
        s = from_env().with_overrides(data_dir=Path(data_dir) if data_dir else None)
        s = with_configured_vendors(s)  # the vendors defined by files, registered before anything is built
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    for name in unknown_settings():
        click.echo(f"warning: {name} is not a Keybrake setting and is ignored (a typo?)", err=True)
    return s


def run(settings: Settings, fn: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the existing store (never creates one), run `fn` on it, close it; returns fn's result.

    A missing data directory or database, wrong master key or old schema, and an admin ApiError (printed as
    `code: message (field)`), become click.ClickException (exit 1).
    """

    require_data_dir(settings)  # a mistyped --data-dir is refused by name, never created

    async def go() -> T:
        try:
            rt = await open_runtime(settings, create=False)
        except (MasterKeyError, SchemaError, FileNotFoundError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        try:
            return await fn(rt)
        except ApiError as exc:
            where = f" ({exc.field})" if exc.field else ""
            raise click.ClickException(f"{exc.code}: {exc.message}{where}") from None
        finally:
            await rt.store.close()

    return asyncio.run(go())


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """`obj` as JSON text in UTF-8 (decimals exact): `é`, `…` and `漢` as themselves, never
    `\\u…`, except the characters `printable` escapes (controls, bidi and other format
    characters, line separators), which JSON escapes the same way. With `indent`, one value per
    line; the line breaks are the layout's own (JSON escapes every newline inside a string)."""
    text = str(simplejson.dumps(obj, use_decimal=True, indent=indent, ensure_ascii=False))
    return "\n".join(printable(line) for line in text.split("\n"))


def print_json(obj: Any) -> None:
    """Print a JSON document (UTF-8, decimals exact, indented by 2: `json_text`) on standard output."""
    click.echo(json_text(obj, indent=2))


def validate(model: type[M], data: dict[str, Any]) -> M:
    """`data` checked by an admin request model, as the admin API checks a request body.

    Raises click.ClickException `validation_error: <message> (<field>)` (exit 1).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        msg, field = key_ops.pydantic_field(exc)
        raise click.ClickException(f"validation_error: {msg} ({field})") from None


def metadata(items: tuple[str, ...]) -> dict[str, str]:
    """`--metadata key=value` items as a dict; raises click.ClickException on an item without `=`."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise click.ClickException(f"--metadata {item!r} must be key=value")
        out[k] = v
    return out


# Unicode categories a table cell never prints raw: controls (Cc: BEL, ESC, newline), format
# characters (Cf: the bidi overrides U+202A-U+202E and isolates, zero-width characters), line and
# paragraph separators (Zl, Zp) and unpaired surrogates (Cs). Any of them in a value an agent
# chose (a path, a label) could move, hide or reorder what the operator's terminal shows.
_UNPRINTED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escaped(ch: str) -> str:
    """`ch` as JSON escapes it: `\\uXXXX` (lowercase hex), a surrogate pair above U+FFFF."""
    cp = ord(ch)
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def printable(text: str) -> str:
    """`text` with every character of category Cc, Cf, Zl, Zp or Cs written as `\\uXXXX` (as JSON
    output escapes it); every other character as is."""
    return "".join(_escaped(ch) if unicodedata.category(ch) in _UNPRINTED else ch for ch in text)


def cell(value: Any) -> str:
    """One table cell: a value as the admin API's JSON writes it (`null`, `true`, `false`, a number
    or a string unquoted, with its control and format characters escaped by `printable`; a list as
    its items joined by commas); a missing column is empty."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return ",".join(cell(v) for v in value)
    return json_text(value)


def table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> None:
    """Print `rows` as a left-aligned text table: a header of `cols`, then one line per row
    (cells as `cell` writes them; RFC 3339 times as `YYYY-MM-DD hh:mm:ss UTC (3 min ago)` unless
    the command got `--iso`), narrowed to the terminal's width (`tables.fit`, cut cells end `…`)."""
    iso = want_iso()
    cells = [[cell(r[c]) if c in r else "" for c in cols] for r in rows]
    if not iso:
        cells = [[human_time(v) for v in row] for row in cells]
    widths = [max([width(c)] + [width(row[i]) for row in cells]) for i, c in enumerate(cols)]
    widths = fit(widths, list(cols), tables.terminal_width())
    click.echo("  ".join(pad(cut(c, w), w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(pad(cut(v, w), w) for v, w in zip(row, widths, strict=True)).rstrip())
