"""The one parse of a request to a configured vendor: every field its definition reads is read
here, once, in one shape (docs/policy.md, one parse; docs/vendors.md, vendors defined by a file).

JSON bodies are parsed strictly (`core.params.parse_json_body`); a key a definition reads must be
spelled exactly (or, with `json_keys = "case_insensitive"`, in any ASCII case), and a near-miss
spelling a lenient reader could take for it is refused. Form bodies and query strings follow
`core.params` (a name once, in one shape; a read name may repeat, or be sent as `name[]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from keybrake.core.destinations import email_address
from keybrake.core.errors import Denial
from keybrake.core.names import check_spelling
from keybrake.core.params import Params, merge, parse_form, parse_json_body, query_params
from keybrake.core.request import ProxyRequest
from keybrake.vendors.base import content_type
from keybrake.vendors.configured import schema as s
from keybrake.vendors.configured.paths import JsonPath, KeyMatch, exact_key, folded_key, read, shape_problem
from keybrake.vendors.stripe_money import exponent as stripe_exponent

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MAX_ITEMS = 10_000
# ISO 4217 minor-unit exponents other than 2 (the ISO 4217 list one, currencies in use).
ISO4217_EXPONENTS = {
    **dict.fromkeys("bif clp djf gnf isk jpy kmf krw pyg rwf ugx uyi vnd vuv xaf xof xpf".split(), 0),
    **dict.fromkeys("bhd iqd jod kwd lyd omr tnd".split(), 3),
    **dict.fromkeys("clf uyw".split(), 4),
}


def exponent_of(currency: str, table: str) -> int:
    """Decimal places of `currency`'s minor unit in `table`: "iso4217" (ISO 4217: ISK and JPY 0,
    KWD 3, most 2) or "stripe" (Stripe's table, docs/policy.md currencies: ISK read as 2)."""
    if table == "stripe":
        return stripe_exponent(currency)
    return ISO4217_EXPONENTS.get(currency.lower(), 2)


@dataclass(frozen=True)
class Source:
    """Where a request's fields are read: its JSON document, or its form/query parameters."""

    doc: Any
    params: Params
    is_json: bool
    match: KeyMatch

    def values(self, path: JsonPath) -> list[Any]:
        """Every value at `path` (JSON: as the document holds them, a `null` there being no value,
        as JSON APIs read it — an SDK sends unset fields so; form/query: strings)."""
        if self.is_json:
            problem = shape_problem(self.doc, path, self.match)
            if problem is not None:
                raise Denial("body_invalid", f"Field {path.text!r} cannot be read: {problem}.")
            return [v for v in read(self.doc, path, self.match) if v is not None]
        return list(self.params.values.get(".".join(path.keys), ()))


@dataclass(frozen=True)
class ConfiguredParse:
    """What the one parse learnt (`VendorRequest.detail`): the endpoint it matched, the item
    count, the amount (major units, currency), each scope's values by scope index, and the body
    member that carried the vault key (`[vault_key] body_field`), if any."""

    endpoint: s.Endpoint | None
    canonical: str  # the body as a canonical string (fingerprints)
    items: int | None = None
    amount: tuple[Decimal, str] | None = None
    scoped: Mapping[int, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    drop: str | None = None  # a body member carrying the vault key, removed before forwarding
    forwarded: bytes | None = None  # the body without `drop` (what the vendor gets), when `drop` is set


def source(
    defn: s.Definition,
    req: ProxyRequest,
    read_names: frozenset[str],
    list_names: frozenset[str],
    read_roots: frozenset[bool] = frozenset(),
) -> Source:
    """The request's fields: its JSON or form body (of a kind the definition accepts), else its
    query string. `read_names`: the fields the definition reads (spelt exactly, body or query,
    not both); `list_names`: those a form or query may repeat; `read_roots`: whether its paths
    start at an array (True) or an object (False) — a JSON body of neither kind is refused, since
    none of its paths would read it (empty: anything). Raises 415
    unsupported_media_type, 400 body_invalid / param_ambiguous."""
    match = folded_key if defn.request.json_keys == "case_insensitive" else exact_key
    query = query_params(req.query, repeatable=list_names)
    check_spelling(query.raw_keys, read_names, vendor=defn.title, literal=True)
    if not req.body or req.method in ("GET", "DELETE"):
        return Source(None, query, False, match)
    ctype = content_type(req)
    kind = "json" if ctype == JSON else "form" if ctype == FORM else None
    if kind is None or kind not in defn.request.bodies:
        accepted = " or ".join(JSON if b == "json" else FORM for b in sorted(defn.request.bodies))
        raise Denial(
            "unsupported_media_type", f"{defn.title} request bodies must be {accepted} (got {ctype or 'none'})."
        )
    in_query = sorted(query.tops & read_names)
    if in_query:
        raise Denial(
            "param_ambiguous",
            f"Field {in_query[0][:40]!r} is read from the body; remove it from the query string. Nothing was sent.",
        )
    if kind == "json":
        doc, params = parse_json_body(req.body)
        if read_roots and not (isinstance(doc, dict | list) and isinstance(doc, list) in read_roots):
            shape = "an array" if isinstance(doc, list) else "an object" if isinstance(doc, dict) else "a JSON value"
            raise Denial("body_invalid", f"{defn.title} takes no body that is {shape} here. Nothing was sent.")
        return Source(doc, merge(query, params), True, match)
    params = parse_form(req.query, req.body, repeatable=list_names)
    check_spelling(params.raw_keys, read_names, vendor=defn.title, literal=True)
    return Source(None, params, False, match)


def entries(src: Source, path: JsonPath) -> list[Any]:
    """THE reader of a field's values, entry by entry (items counting, scopes and forbids all
    read through it, so what is counted is what is checked): a value at `path`, or each entry
    of an array there. An array inside such an array, or a `null` entry, is refused (400
    body_invalid): no reader could tell how the vendor counts it."""
    out: list[Any] = []
    for v in src.values(path):
        for item in v if isinstance(v, list) else [v]:
            if isinstance(item, list) or item is None:
                raise Denial("body_invalid", f"Field {path.text!r} holds a nested array or a null entry.")
            out.append(item)
    return out


def strings(src: Source, path: JsonPath) -> list[str]:
    """String values at `path` (`entries`: a string, or each string of an array there); anything
    else is refused (400 body_invalid)."""
    out = entries(src, path)
    for item in out:
        if not isinstance(item, str):
            raise Denial("body_invalid", f"Field {path.text!r} must hold strings.")
    return out


def addresses(src: Source, path: JsonPath, address_field: str) -> list[str]:
    """Email addresses at `path`: a string (comma-separated recipients, quoted commas kept), or
    an array of strings or of objects with `address_field`. Returns `local@domain` forms.
    Raises 400 body_invalid / param_ambiguous, 403 scope_violation (an unreadable address)."""
    out: list[str] = []
    for item in entries(src, path):
        if isinstance(item, dict):
            keys = src.match(item, address_field)
            item = item[keys[0]] if keys else None
        if not isinstance(item, str):
            raise Denial("body_invalid", f"Field {path.text!r} must hold addresses (strings).")
        for piece in split_recipients(item, path.text):
            out.append(email_address(piece, field=path.text)[0])
    return out


def split_recipients(value: str, field: str) -> list[str]:
    """`a@x.com, "Doe, Jane" <j@y.com>` → each recipient, as email headers list them: commas
    inside quotes, comments or angle brackets do not split. An empty entry is refused (400)."""
    parts: list[str] = []
    current: list[str] = []
    quoted, depth, angle, escaped = False, 0, False, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif ch == '"' and not depth:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        elif not quoted and not depth and ch in "<>":
            angle = ch == "<"
        elif ch == "," and not (quoted or depth or angle):
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    if any(not p.strip() for p in parts):
        raise Denial("body_invalid", f"Field {field!r} has an empty recipient (two commas, or one at an end).")
    return [p.strip() for p in parts]


def count_items(src: Source, items: s.Items) -> int:
    """The item count of `items` (docs/vendors.md, per_item pricing); refused past MAX_ITEMS."""
    total = 0
    for path in items.paths:
        if items.count == "array_length" and not src.is_json:
            total += len(src.values(path))  # a form's repeated field (`to=…&to=…`, `to[]=…`)
        elif items.count == "array_length":
            for v in src.values(path):
                if not isinstance(v, list):
                    raise Denial("body_invalid", f"Field {path.text!r} must be an array.")
                total += len(v)
        elif items.count == "addresses":
            total += len(addresses(src, path, items.address_field))
        else:
            total += len(entries(src, path))  # a list counts entry by entry, as scopes read it
    if total > MAX_ITEMS:
        raise Denial("body_invalid", f"The request carries {total} items; at most {MAX_ITEMS} are priced per call.")
    return total


def read_amount(src: Source, money: s.Money) -> tuple[Decimal, str]:
    """(amount in the currency's major units, lower-case currency) read once. Raises 400 body_invalid."""
    (raw,) = _one(src, money.path, "an amount")
    if money.currency is not None:
        currency = money.currency
    else:
        assert money.currency_path is not None
        (cur,) = _one(src, money.currency_path, "a currency code")
        if not isinstance(cur, str) or len(cur) != 3 or not cur.isascii() or not cur.isalpha():
            raise Denial("body_invalid", f"Field {money.currency_path.text!r} must be a three-letter currency code.")
        currency = cur.lower()
    return to_major(raw, money, currency), currency


def to_major(raw: Any, money: s.Money, currency: str) -> Decimal:
    """A JSON number or decimal string as a non-negative amount in major units (minor: whole)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise Denial("body_invalid", f"Field {money.path.text!r} must be a number.")
    try:
        d = Decimal(str(raw))
    except InvalidOperation:
        raise Denial("body_invalid", f"Field {money.path.text!r} must be a number.") from None
    if not d.is_finite() or d < 0 or d > 10**12:
        raise Denial("body_invalid", f"Field {money.path.text!r} must be a non-negative amount.")
    if money.unit == "major":
        return d
    if d != d.to_integral_value():
        raise Denial("body_invalid", f"Field {money.path.text!r} is in minor units: a whole number.")
    return d.scaleb(-exponent_of(currency, money.minor_units))


def _one(src: Source, path: JsonPath, what: str) -> list[Any]:
    values = src.values(path)
    if len(values) != 1:
        raise Denial(
            "body_invalid",
            f"Field {path.text!r} must hold {what} exactly once (found {len(values)}). Nothing was sent.",
        )
    return values
