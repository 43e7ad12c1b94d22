"""Hypothesis arguments for an MCP tool (keybrake.vendors.tools): values valid against the subset of
JSON Schema the tool catalog uses (object, string with pattern/length, integer with bounds,
boolean, array with item bounds, enum, a `["string", "array"]` union, an `additionalProperties`
string map), plus, for an open tool, extra parameters the tool does not declare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from keybrake.vendors.tools import IDEMPOTENCY_ARG, Tool

# Text an agent might pass: printable, non-ASCII, look-alikes, the form's own delimiters.
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),  # no lone surrogates
        st.sampled_from(list("&=+%[]#?/ \n\u00e9\u200b\ufeff\U0001f600")),
    ),
    max_size=12,
)
# A parameter name an agent might invent (Stripe's and Twilio's spellings: snake_case, CamelCase).
EXTRA_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,11}|[A-Z][A-Za-z]{0,11}", fullmatch=True)
MAP_KEY = st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True)


@dataclass(frozen=True)
class Gen:
    """How to fill values: `text` for a free string, `map_key` for a key of a string map, and
    `fields`: a strategy by property name (at any depth) instead of its schema's."""

    text: st.SearchStrategy[str] = TEXT
    map_key: st.SearchStrategy[str] = MAP_KEY
    fields: Mapping[str, st.SearchStrategy[Any]] = field(default_factory=dict)


ANY = Gen()


def from_schema(schema: dict[str, Any], gen: Gen = ANY) -> st.SearchStrategy[Any]:
    """Values valid against `schema`. Raises ValueError for a schema construct it does not know,
    so a new kind of tool argument fails here rather than going untested."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*(from_schema({**schema, "type": k}, gen) for k in kind))
    if kind == "string":
        if "pattern" in schema:
            # `^…$`: the whole string (Python's `$` would also admit a trailing newline).
            inner = schema["pattern"].removeprefix("^").removesuffix("$")
            return st.from_regex(inner, fullmatch=True).filter(lambda s: _length_ok(s, schema) and s.strip(".") != "")
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if (lo, hi) == (3, 3):  # a currency code
            return st.sampled_from(["usd", "eur", "gbp", "jpy", "chf"])
        return gen.text.filter(lambda s: _length_ok(s, schema))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {"type": "string"}), gen),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if kind == "object":
        return object_args(schema, gen)
    raise ValueError(f"no strategy for JSON schema {schema!r}")


def _length_ok(s: str, schema: dict[str, Any]) -> bool:
    return bool(schema.get("minLength", 0) <= len(s) <= schema.get("maxLength", 10**9))


def object_args(schema: dict[str, Any], gen: Gen = ANY) -> st.SearchStrategy[dict[str, Any]]:
    """An object: every required property, any subset of the optional ones, and entries of its
    `additionalProperties` map (when that is a schema)."""
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties", False)

    def one(k: str, v: dict[str, Any]) -> st.SearchStrategy[Any]:
        return gen.fields[k] if k in gen.fields else from_schema(v, gen)

    fixed = st.fixed_dictionaries(
        {k: one(k, v) for k, v in props.items() if k in required},
        optional={k: one(k, v) for k, v in props.items() if k not in required},
    )
    if not isinstance(extra, dict):
        return fixed
    more = st.dictionaries(gen.map_key.filter(lambda k: k not in props), from_schema(extra, gen), max_size=4)
    return st.builds(lambda a, b: {**b, **a}, fixed, more)


# Values of a parameter a tool does not declare: plain values and Stripe's nested shapes.
PLAIN = st.one_of(TEXT, st.integers(-(10**12), 10**12), st.booleans())
EXTRA_VALUE = st.one_of(
    PLAIN,
    st.dictionaries(MAP_KEY, PLAIN, max_size=3),
    st.lists(PLAIN, max_size=3),
    st.lists(st.dictionaries(MAP_KEY, PLAIN, min_size=1, max_size=3), max_size=2),
)


@st.composite
def tool_args(
    draw: st.DrawFn,
    tool: Tool,
    *,
    extras: bool = True,
    extra_value: st.SearchStrategy[Any] = EXTRA_VALUE,
    gen: Gen = ANY,
) -> dict[str, Any]:
    """Arguments valid against `tool.input_schema()`; with `extras`, an open tool also gets
    parameters it does not declare (names never a declared one's, nor `idempotency_key`)."""
    schema = tool.input_schema()
    args = draw(object_args(schema, gen))
    for group in tool.one_of_each:  # at least one of each group (Twilio: Body, MediaUrl or ContentSid)
        if not any(name in args for name in group):
            name = draw(st.sampled_from(group))
            props = schema["properties"]
            args[name] = draw(gen.fields[name] if name in gen.fields else from_schema(props[name], gen))
    if extras and schema["additionalProperties"] is True:
        # Names unique even ignoring case: a vendor's parse may refuse `to` next to `To` (Resend).
        taken = {n.casefold() for n in (*schema["properties"], IDEMPOTENCY_ARG)}
        names = draw(st.lists(EXTRA_NAME, max_size=3, unique_by=str.casefold))
        args.update({n: draw(extra_value) for n in names if n.casefold() not in taken})
    return args
