"""One parse of a request's parameters, used for policy, cost and audit alike (docs/policy.md, one parse).

One parse means one name, one value, one shape: whatever Keybrake enforces is exactly what the
vendor acts on, or the request is refused (400) before anything is forwarded.

Form keys use the vendors' bracket syntax: `metadata[order_id]` ↔ dotted `metadata.order_id`;
array indices (`items[0][price]`, `expand[]`) disappear from the dotted path so that a rule on
`items.price` applies to every element. A name arrives in exactly one *shape* (its bracket
segments, every numeric index counted as one index marker): `amount` together with `amount[]`,
`x[0]` with `x[]`, `x[]` with `x[][]`, or a name that is both a value and a parent
(`metadata=` with `metadata[a]=1`) are refused, because the vendor's own parser (Rack-style for
Stripe: a plain key overwrites, `x[]` appends, `x[a]` nests) would act on a different value
than the first one Keybrake would read. A name is in the query string or in the body, never
both. Vendors without bracket syntax (Twilio) are parsed with literal names (`brackets=False`).

JSON bodies are parsed strictly: UTF-8, no duplicate keys, no key with surrounding whitespace,
no two keys of one object that differ only in case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from keybrake.core.errors import Denial
from keybrake.core.names import fold, padded, show

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_INDEX = re.compile(r"^[0-9]+$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_EMPTY_JSON_OBJECT = re.compile(rb"^[ \t\r\n]*\{[ \t\r\n]*\}[ \t\r\n]*$")

# Shape markers: `[N]` (any numeric index) and `[]` (append).
_AT_INDEX = 0
_APPEND = 1
Shape = tuple[str | int, ...]


@dataclass(frozen=True)
class Params:
    """Parsed parameters: dotted path → every value given for it, in order.

    `lists`: dotted names sent in a list shape (`x[]`, `x[N]`, a repeatable name, a JSON
    array), which may hold several values. `tops`: the top-level names (before any bracket or
    JSON nesting), what the vendor sees as its parameters.
    """

    values: dict[str, tuple[str, ...]]
    raw_keys: frozenset[str]
    lists: frozenset[str] = frozenset()
    tops: frozenset[str] = frozenset()

    def scalar(self, name: str) -> str | None:
        """The one value of `name`, or None when absent.

        Raises Denial `param_ambiguous` when `name` was sent as a list: enforcement reads one
        value, and the vendor would act on a list (or refuse it).
        """
        vals = self.values.get(name)
        if not vals:
            return None
        if len(vals) > 1 or name in self.lists:
            raise Denial(
                "param_ambiguous",
                f"Parameter {name!r} takes one value but was sent as a list; send `{name}` once, as a plain "
                "value. Nothing was sent. Do not retry unchanged.",
            )
        return vals[0]

    def has(self, name: str) -> bool:
        return name in self.values


EMPTY = Params({}, frozenset())


def _split_key(raw_key: str) -> tuple[str, list[str]]:
    m = _KEY.match(raw_key)
    if not m:
        raise Denial("body_invalid", f"Parameter name {show(raw_key)} is malformed (unbalanced or misplaced brackets).")
    return m.group(1), _BRACKET.findall(m.group(2))


def _marker(segment: str) -> str | int:
    if segment == "":
        return _APPEND
    return _AT_INDEX if _INDEX.match(segment) else segment


def dotted(raw_key: str) -> str:
    """`metadata[order_id]` → `metadata.order_id`; indices and `[]` drop out (`items[0][price]` → `items.price`)."""
    base, segs = _split_key(raw_key)
    return ".".join([base, *(s for s in segs if isinstance(_marker(s), str))])


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    """`name=value` pairs split on `&`, `+` and percent-escapes decoded (UTF-8, strictly).

    Refused (400 `body_invalid`): a pair without `=`, a malformed percent-escape, bytes that
    are not UTF-8 after decoding — each of which vendors' parsers read differently.
    """
    out: list[tuple[str, str]] = []
    for piece in text.split("&"):
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        if not sep:
            raise Denial(
                "body_invalid",
                f"The {where} has a parameter without '=' ({show(unquote_plus(key, errors='replace'))}); send "
                "name=value (name= for an empty value).",
            )
        if "%" in piece and _BAD_ESCAPE.search(piece):
            raise Denial(
                "body_invalid", f"The {where} has a malformed percent-escape ('%' not followed by two hex digits)."
            )
        try:
            out.append((_unquote(key), _unquote(value)))
        except UnicodeDecodeError:
            raise Denial("body_invalid", f"The {where} is not valid UTF-8 after percent-decoding.") from None
    return out


def _unquote(text: str) -> str:
    return unquote_plus(text, errors="strict") if "%" in text or "+" in text else text


def _collect(
    pairs: Iterable[tuple[str, str]], repeatable: frozenset[str] = frozenset(), *, brackets: bool = True
) -> Params:
    """Group pairs by name, refusing every way one name could be read two ways (see the module doc)."""
    values: dict[str, list[str]] = {}
    shapes: dict[str, tuple[Shape, str]] = {}
    seen: set[str] = set()
    lists: set[str] = set()
    tops: set[str] = set()
    for raw_key, value in pairs:
        if not raw_key:
            raise Denial("body_invalid", "A parameter has an empty name.")
        _check_name_size(raw_key, raw_key.count("[") + 1)
        if padded(raw_key):
            raise Denial(
                "param_ambiguous",
                f"Parameter name {show(raw_key)} starts or ends with whitespace; send the name without it.",
            )
        repeats = raw_key in repeatable or (brackets and raw_key.endswith("[]"))
        if raw_key in seen and not repeats:
            raise Denial(
                "param_ambiguous",
                f"Parameter {show(raw_key)} appears more than once; send each parameter once.",
            )
        seen.add(raw_key)
        shape: Shape
        if brackets and ("[" in raw_key or "]" in raw_key):
            base, segs = _split_key(raw_key)
            shape = (base, *(_marker(s) for s in segs))
        else:
            base, shape = raw_key, (raw_key,)
        if brackets and "." in base:
            head, _, rest = base.partition(".")
            raise Denial(
                "param_ambiguous",
                f"Parameter name {show(raw_key)} contains '.'; nested parameters use brackets (e.g. {head}[{rest}]).",
            )
        name = ".".join(p for p in shape if isinstance(p, str)) if len(shape) > 1 else base
        first_shape, first_key = shapes.setdefault(name, (shape, raw_key))
        if first_shape != shape:
            raise Denial(
                "param_ambiguous",
                f"Parameter {name!r} is sent in two shapes ({show(first_key)} and {show(raw_key)}); send "
                f"`{name}` once, in one shape.",
            )
        if len(shape) != sum(isinstance(p, str) for p in shape) or raw_key in repeatable:
            lists.add(name)
        tops.add(base)
        values.setdefault(name, []).append(value)
    if brackets:
        _no_value_and_parent(values)
    return Params({k: tuple(v) for k, v in values.items()}, frozenset(seen), frozenset(lists), frozenset(tops))


# Bounds on one parameter name: Rack's own nesting limit (32) and a length no vendor's parameters
# come near. They keep the checks below linear in the body (a 120 KB name of 60,000 segments
# held the event loop for 13 s before — found by the red-team run).
MAX_DEPTH = 32
MAX_NAME_CHARS = 512


def _check_name_size(name: str, depth: int) -> None:
    if len(name) > MAX_NAME_CHARS or depth > MAX_DEPTH:
        raise Denial(
            "body_invalid",
            f"Parameter name {show(name[:60])}… is longer than {MAX_NAME_CHARS} characters or nested deeper than "
            f"{MAX_DEPTH} levels.",
        )


def _no_value_and_parent(names: Iterable[str]) -> None:
    """Refuse a dotted name that is both a value and the parent of another (`metadata` and `metadata.a`)."""
    present = set(names)
    for name in sorted(present):
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in present:
                raise Denial(
                    "param_ambiguous",
                    f"Parameter {parent!r} is sent both as a value and as the parent of {name!r}; send one of them.",
                )


def merge(query: Params, body: Params, *, nested: bool = True) -> Params:
    """Query-string and body parameters together; a name in both places is refused (400).

    Vendors merge the two shallowly (Rack: the body's top-level value replaces the query's), so
    the check is on top-level names as well as on dotted names.
    """
    if not query.tops or not body.tops:
        return body if not query.tops else query  # each side was checked when it was collected
    both = sorted((query.tops & body.tops) | (query.values.keys() & body.values.keys()))
    if both:
        raise Denial(
            "param_ambiguous",
            f"Parameter {both[0]!r} appears in both the query string and the body; send it once, in one place.",
        )
    values = {**query.values, **body.values}
    if nested:
        _no_value_and_parent(values)
    return Params(values, query.raw_keys | body.raw_keys, query.lists | body.lists, query.tops | body.tops)


def query_params(query: bytes, *, repeatable: frozenset[str] = frozenset(), brackets: bool = True) -> Params:
    """Parse a query string (percent-encoded ASCII)."""
    if not query:
        return EMPTY  # most proxied calls have none
    try:
        text = query.decode("ascii")
    except UnicodeDecodeError:
        raise Denial("param_ambiguous", "The query string must be percent-encoded ASCII.") from None
    return _collect(_pairs(text, "query string"), repeatable, brackets=brackets)


def form_params(body: bytes | None, *, repeatable: frozenset[str] = frozenset(), brackets: bool = True) -> Params:
    """Parse an `application/x-www-form-urlencoded` body (UTF-8)."""
    try:
        text = body.decode("utf-8") if body else ""
    except UnicodeDecodeError:
        raise Denial("body_invalid", "The request body is not valid UTF-8.") from None
    return _collect(_pairs(text, "request body"), repeatable, brackets=brackets)


def parse_form(
    query: bytes, body: bytes | None, *, repeatable: frozenset[str] = frozenset(), brackets: bool = True
) -> Params:
    """Parse query string and form body together under the one-parse rules (module doc).

    Arrays use the bracket syntax (`a[]=`, `a[0]=`), or — for vendors whose own syntax repeats
    the key, like Twilio's `MediaUrl` — a name listed in `repeatable`. `brackets=False` reads
    names literally (Twilio has no bracket syntax: `To[]` is just another name).
    Raises Denial `param_ambiguous` / `body_invalid` (400).
    """
    q = query_params(query, repeatable=repeatable, brackets=brackets)
    b = form_params(body, repeatable=repeatable, brackets=brackets)
    return merge(q, b, nested=brackets)


def check_no_body(method: str, media_type: str, body: bytes) -> None:
    """GET and DELETE carry no body: parameters of a read or a delete go in the query string.

    A body there is not evidence for scope or policy (a vendor may or may not read it), so it is
    refused. An empty JSON object (`{}`, which resend-python sends on every GET and DELETE) holds
    no parameters and passes. Raises Denial `body_invalid` (400).
    """
    if method not in ("GET", "DELETE") or not body:
        return
    if media_type == "application/json" and _EMPTY_JSON_OBJECT.match(body):
        return
    raise Denial(
        "body_invalid",
        f"A {method} request may not carry a body; send its parameters in the query string. Nothing was sent. "
        "Do not retry with a body.",
    )


def check_charset(content_type_header: str | None, body: bytes) -> None:
    """Request bodies are read as UTF-8: a `charset` parameter naming anything else is refused.

    A vendor that honours the charset would decode other names and values from the same bytes.
    Raises Denial `unsupported_media_type` (415).
    """
    if not body or not content_type_header:
        return
    for param in content_type_header.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise Denial(
                "unsupported_media_type",
                f"Request bodies must be UTF-8 (got charset={value.strip()[:40]!r}); send them as UTF-8 or omit "
                "the charset.",
            )


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    folded: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise Denial("body_invalid", f"JSON object has the key {show(k)} more than once.")
        if not k:
            raise Denial("body_invalid", "JSON object has an empty key.")
        if padded(k):
            raise Denial("body_invalid", f"JSON key {show(k)} starts or ends with whitespace; send it without.")
        if k == "__proto__" or (k == "constructor" and isinstance(v, dict)):
            # JavaScript servers can read these as an object's prototype: other names' values.
            raise Denial("body_invalid", f"JSON key {k!r} is refused (a JavaScript prototype name).")
        twin = folded.setdefault(fold(k), k)
        if twin != k:
            raise Denial(
                "body_invalid", f"JSON object has the keys {show(twin)} and {show(k)}, which differ only in case."
            )
        out[k] = v
    return out


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    """`NaN`, `Infinity`, `-Infinity`: Python's JSON reader takes them, JSON does not."""
    raise Denial("body_invalid", f"The request body is not valid JSON ({name} is not a JSON number).")


def parse_json_body(body: bytes) -> tuple[Any, Params]:
    """Parse a JSON body strictly and flatten it to dotted params.

    Refused (400 `body_invalid`): not UTF-8, not JSON (NaN and Infinity included), a duplicate
    key, an empty key or one with surrounding whitespace, two keys of one object equal after case folding. Refused (400
    `param_ambiguous`): one dotted name reached by two key paths (`{"a.b": 1, "a": {"b": 2}}`),
    or a name that is both a value and a parent.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Denial("body_invalid", "The request body is not valid UTF-8.") from None
    try:
        doc = json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise Denial("body_invalid", f"The request body is not valid JSON ({exc.msg} at position {exc.pos}).") from None
    except RecursionError:
        raise Denial("body_invalid", "The request body nests JSON too deeply.") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Denial(
                "body_invalid", "The request body holds a lone UTF-16 surrogate escape (such as \\ud800), not text."
            ) from None
    values: dict[str, list[str]] = {}
    paths: dict[str, tuple[str, ...]] = {}
    lists: set[str] = set()

    def walk(path: tuple[str, ...], v: Any, in_list: bool) -> None:
        if len(path) > MAX_DEPTH:
            raise Denial("body_invalid", f"The request body nests objects deeper than {MAX_DEPTH} levels.")
        if isinstance(v, dict):
            for k, sub in v.items():
                walk((*path, k), sub, in_list)
        elif isinstance(v, list):
            for sub in v:
                walk(path, sub, True)
        elif path:
            name = ".".join(path)
            _check_name_size(name, name.count(".") + 1)
            if paths.setdefault(name, path) != path:
                raise Denial(
                    "param_ambiguous",
                    f"JSON names {'.'.join(paths[name])!r} by two different key paths; send it once, in one shape.",
                )
            values.setdefault(name, []).append(v if isinstance(v, str) else json.dumps(v))
            if in_list:
                lists.add(name)

    walk((), doc, False)
    _no_value_and_parent(values)
    items = doc if isinstance(doc, list) else [doc]
    tops = frozenset(k for item in items if isinstance(item, dict) for k in item)
    return doc, Params({k: tuple(v) for k, v in values.items()}, frozenset(values), frozenset(lists), tops)
