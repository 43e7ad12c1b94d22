"""One parse of a request's parameters, used for policy, cost and audit alike (CONTRACT §2.3).

Form keys use the vendors' bracket syntax: `metadata[order_id]` ↔ dotted `metadata.order_id`;
array indices (`items[0][price]`, `expand[]`) disappear from the dotted path so that a rule on
`items.price` applies to every element.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from keybrake.errors import Denial

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class Params:
    """Parsed parameters: dotted path → every value given for it, in order."""

    values: dict[str, tuple[str, ...]]
    raw_keys: frozenset[str]

    def scalar(self, name: str) -> str | None:
        vals = self.values.get(name)
        return vals[0] if vals else None

    def has(self, name: str) -> bool:
        return name in self.values


EMPTY = Params({}, frozenset())


def dotted(raw_key: str) -> str:
    m = _KEY.match(raw_key)
    if not m:
        raise Denial("body_invalid", f"Parameter name {raw_key[:60]!r} is malformed (unbalanced brackets).")
    parts = [m.group(1)]
    parts += [p for p in _BRACKET.findall(m.group(2)) if p and not p.isdigit()]
    return ".".join(parts)


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise Denial("body_invalid", f"The {where} is not valid UTF-8 after percent-decoding.") from None


def parse_form(query: bytes, body: bytes | None, *, repeatable: frozenset[str] = frozenset()) -> Params:
    """Parse query string and form body together, refusing duplicated scalar parameters.

    Arrays use the bracket syntax (`a[]=`, `a[0]=`), or — for vendors whose own syntax repeats
    the key, like Twilio's `MediaUrl` — a name listed in `repeatable`.
    """
    try:
        query_text = query.decode("ascii")
    except UnicodeDecodeError:
        raise Denial("param_ambiguous", "The query string must be percent-encoded ASCII.") from None
    try:
        body_text = body.decode("utf-8") if body else ""
    except UnicodeDecodeError:
        raise Denial("body_invalid", "The request body is not valid UTF-8.") from None
    query_pairs = _pairs(query_text, "query string")
    body_pairs = _pairs(body_text, "request body")
    query_keys = {k for k, _ in query_pairs}
    for k, _ in body_pairs:
        if k in query_keys:
            raise Denial(
                "param_ambiguous",
                f"Parameter {k!r} appears in both the query string and the body; send it once.",
            )
    return _collect([*query_pairs, *body_pairs], repeatable)


def _collect(pairs: Iterable[tuple[str, str]], repeatable: frozenset[str] = frozenset()) -> Params:
    values: dict[str, list[str]] = {}
    seen: set[str] = set()
    for raw_key, value in pairs:
        if raw_key in seen and not raw_key.endswith("[]") and raw_key not in repeatable:
            raise Denial(
                "param_ambiguous",
                f"Parameter {raw_key!r} appears more than once; send each parameter once.",
            )
        seen.add(raw_key)
        values.setdefault(dotted(raw_key), []).append(value)
    return Params({k: tuple(v) for k, v in values.items()}, frozenset(seen))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Denial("body_invalid", f"JSON object has the key {k!r} more than once.")
        out[k] = v
    return out


def parse_json_body(body: bytes) -> tuple[Any, Params]:
    """Parse a JSON body strictly (UTF-8, no duplicate keys) and flatten it to dotted params."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Denial("body_invalid", "The request body is not valid UTF-8.") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise Denial("body_invalid", f"The request body is not valid JSON ({exc.msg} at position {exc.pos}).") from None
    values: dict[str, list[str]] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else k, sub)
        elif isinstance(v, list):
            for sub in v:
                walk(prefix, sub)
        elif prefix:
            values.setdefault(prefix, []).append(v if isinstance(v, str) else json.dumps(v))

    walk("", doc)
    return doc, Params({k: tuple(v) for k, v in values.items()}, frozenset(values))
