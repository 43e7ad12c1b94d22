"""Reading a vendor definition (TOML) into `schema.Definition`, refusing anything unknown or
wrong with the key path that is (docs/vendors.md, vendors defined by a file). Pure: the text in,
a Definition or a DefinitionError out."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from difflib import get_close_matches
from typing import Any, TypeVar
from urllib.parse import urlsplit

from keybrake.core.money import MICRO
from keybrake.core.patterns import EndpointPattern, PatternError, parse_pattern
from keybrake.core.policy import CORE_RANKS
from keybrake.vendors.configured import schema as s
from keybrake.vendors.configured.paths import JsonPath, compile_path
from keybrake.vendors.registry import RESERVED_NAMES

T = TypeVar("T")
U = TypeVar("U")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_SETTING = re.compile(r"^KEYBRAKE_[A-Z0-9_]{1,60}$")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_TEMPLATE_NAME = re.compile(r"\{([^{}]*)\}")
MAX_BODY = 100 * 1024 * 1024
# Headers Keybrake sets or reads itself: never an agent header a definition forwards.
_OWN_HEADERS = frozenset({"authorization", "host", "content-length", "transfer-encoding", "x-keybrake-key", "cookie"})


class Bad(Exception):
    """A refusal inside the parse: `where` (key path) and `what`."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(where, what)
        self.where, self.what = where, what


class Table:
    """A TOML table being read: each key is taken once; `done` refuses the keys left over."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise Bad(where, "must be a table")
        self.data, self.where, self.taken = data, where, set[str]()

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, check: Callable[[Any, str], T], default: U) -> T | U:
        self.taken.add(key)
        return check(self.data[key], self.at(key)) if key in self.data else default

    def need(self, key: str, check: Callable[[Any, str], T]) -> T:
        self.taken.add(key)
        if key not in self.data:
            near = get_close_matches(key, [k for k in self.data if isinstance(k, str) and k != key], n=1, cutoff=0.75)
            if near:  # a misspelt required key is named, not only reported missing
                raise Bad(self.at(near[0]), f"is not a known key here (did you mean {key!r}?)")
            raise Bad(self.at(key), "is required")
        return check(self.data[key], self.at(key))

    def done(self) -> None:
        extra = sorted(set(self.data) - self.taken)
        if extra:
            near = get_close_matches(extra[0], sorted(self.taken), n=1, cutoff=0.75)
            hint = f"did you mean {near[0]!r}?" if near else "check the spelling; docs/vendors.md"
            raise Bad(self.at(extra[0]), f"is not a known key here ({hint})")


def text(v: Any, where: str) -> str:
    """A non-empty string."""
    if not isinstance(v, str) or not v:
        raise Bad(where, "must be a non-empty string")
    return v


def member(v: Any, where: str) -> str:
    """A top-level JSON member name: printable, no blanks around it, no `.` or `[` (not a path)."""
    if not isinstance(v, str) or not v or not v.isprintable() or v != v.strip() or any(c in v for c in ".[]"):
        raise Bad(where, "must be a JSON member name (printable, no surrounding blanks, no '.', '[' or ']')")
    return v


def template(v: Any, where: str) -> str:
    """A string, possibly empty (a template over `{secret}` or `{<field>}`)."""
    if not isinstance(v, str):
        raise Bad(where, "must be a string")
    return v


def flag(v: Any, where: str) -> bool:
    """true or false."""
    if not isinstance(v, bool):
        raise Bad(where, "must be true or false")
    return v


def one_of(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    """A check taking exactly one of `options`."""

    def check(v: Any, where: str) -> str:
        if v not in options:
            raise Bad(where, f"must be one of {', '.join(options)} (got {str(v)[:40]!r})")
        return str(v)

    return check


def strings(v: Any, where: str) -> tuple[str, ...]:
    """A list of distinct non-empty strings."""
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise Bad(where, "must be a list of non-empty strings")
    if len(set(v)) != len(v):
        raise Bad(where, "lists a value twice")
    return tuple(v)


def header(v: Any, where: str) -> str:
    """An HTTP header name (returned lower-case), not one Keybrake sets or reads itself."""
    if not isinstance(v, str) or not _HEADER.match(v):
        raise Bad(where, "must be an HTTP header name (letters, digits, '-')")
    if v.lower() in _OWN_HEADERS:
        raise Bad(where, f"{v!r} is a header Keybrake sets or reads itself")
    return v.lower()


def path(v: Any, where: str) -> JsonPath:
    """A JSON path (`paths.compile_path`)."""
    try:
        return compile_path(v)
    except ValueError as exc:
        raise Bad(where, str(exc)) from None


def paths(v: Any, where: str) -> tuple[JsonPath, ...]:
    """A list of JSON paths, each refused at its own index."""
    return tuple(path(p, f"{where}[{i}]") for i, p in enumerate(strings(v, where)))


def pattern(v: Any, where: str) -> EndpointPattern:
    """A `METHOD /path` pattern (`core.patterns.parse_pattern`)."""
    try:
        return parse_pattern(v)
    except PatternError as exc:
        raise Bad(where, f"{str(v)[:60]!r}: {exc}") from None


def usd_decimal(v: Any, where: str) -> int:
    """A USD amount as a decimal string, to micro-USD exactly."""
    if not isinstance(v, str):
        raise Bad(where, 'amounts are decimal strings in USD, e.g. "0.0075"')
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise Bad(where, f"{v[:40]!r} is not a decimal") from None
    if not d.is_finite() or d < 0 or d > 10**6:
        raise Bad(where, "must be a decimal between 0 and 1000000")
    micro = d * MICRO
    if micro != micro.to_integral_value():
        raise Bad(where, f"{v!r} has more than 6 decimals (amounts are kept in micro-USD)")
    return int(micro)


def usd(v: Any, where: str) -> s.Usd:
    """A price: a USD decimal string, or `{ setting = "KEYBRAKE_…", default = "…" }`."""
    if isinstance(v, dict):
        t = Table(v, where)
        env = t.need("setting", text)
        if not _SETTING.match(env):
            raise Bad(t.at("setting"), "must be a variable name such as KEYBRAKE_ACME_USD_PER_CALL")
        default = t.need("default", usd_decimal)
        t.done()
        return s.Usd(default, env)
    return s.Usd(usd_decimal(v, where))


def money(v: Any, where: str) -> s.Money:
    """`{ path, unit, currency | currency_path, minor_units }`: where an amount and its currency are
    read, and (unit = "minor") whose table of currency exponents applies (`schema.MINOR_UNITS`)."""
    t = Table(v, where)
    p = t.need("path", path)
    unit = t.need("unit", one_of(s.UNITS))
    table = t.get("minor_units", one_of(s.MINOR_UNITS), "iso4217")
    currency = t.get("currency", text, None)
    currency_path = t.get("currency_path", path, None)
    t.done()
    if (currency is None) == (currency_path is None):
        raise Bad(where, 'give exactly one of currency (e.g. "usd") or currency_path')
    if currency is not None and not _CURRENCY.match(currency):
        raise Bad(t.at("currency"), 'must be a lower-case three-letter currency code such as "usd"')
    if unit != "minor" and "minor_units" in v:
        raise Bad(t.at("minor_units"), 'is read only with unit = "minor"')
    return s.Money(p, unit, currency, currency_path, table)


def positive_int(low: int, high: int) -> Callable[[Any, str], int]:
    """A check taking a whole number from `low` to `high` (not a boolean)."""

    def check(v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise Bad(where, f"must be a whole number from {low} to {high}")
        return v

    return check


def name(v: Any, where: str) -> str:
    """A vendor name: the path prefix, not one of Keybrake's own."""
    if not isinstance(v, str) or not _NAME.match(v):
        raise Bad(where, "must be lower-case letters, digits and '_', starting with a letter (at most 40)")
    if v in RESERVED_NAMES:
        raise Bad(where, f"{v!r} is one of Keybrake's own path prefixes")
    return v


def policy_field(v: Any, where: str) -> str:
    """A scope field name, not one of the core policy fields."""
    if not isinstance(v, str) or not _FIELD.match(v):
        raise Bad(where, "must be lower-case letters, digits and '_' (a policy field name)")
    if v in CORE_RANKS:
        raise Bad(where, f"{v!r} is one of Keybrake's own policy fields")
    return v


def hosts(v: Any, where: str) -> tuple[str, ...]:
    """At least one upstream host: lower-case names or `*.suffix`."""
    out = strings(v, where)
    for i, h in enumerate(out):
        if not _HOST.match(h):
            raise Bad(f"{where}[{i}]", f"{h[:60]!r} is not a lower-case host name or '*.suffix'")
    if not out:
        raise Bad(where, "must list at least one host")
    return out


def base_url(v: Any, where: str) -> str:
    """An https:// URL without query, fragment or credentials (returned without a trailing `/`)."""
    url = text(v, where)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise Bad(where, "must be an https:// URL without query, fragment or credentials")
    return url.rstrip("/")


def template_names(value: str) -> list[str]:
    """The `{name}` placeholders of a template."""
    return _TEMPLATE_NAME.findall(value)
