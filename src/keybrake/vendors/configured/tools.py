"""A configured vendor's MCP tools: one per `[[endpoint]]` that has an `[endpoint.tool]` table,
with the input schema the definition gives (docs/vendors.md, `[endpoint.tool]`; docs/mcp.md).

`tool_decl` reads the table (called by `definition._endpoint`), `check_tools` applies the rules
that need the whole definition, and `definition_tools` turns a read definition into `Tool`s.
Every refusal is a `parse.Bad` naming the key path (`endpoint[2].tool.path`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator

from keybrake.core.patterns import METHODS, EndpointPattern
from keybrake.vendors.configured import parse as p
from keybrake.vendors.configured import schema as s
from keybrake.vendors.configured.parse import Bad, Table
from keybrake.vendors.configured.paths import JsonPath
from keybrake.vendors.tools import IDEMPOTENCY_ARG, Tool

_TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"^\{([A-Za-z_]+)\}$")  # the names `vendors.tools.Tool` fills
# The top of an input schema: what `Tool` carries (its other keywords go inside `properties`).
_SCHEMA_KEYS = ("type", "properties", "required", "additionalProperties", "description", "title")
_SAMPLE = "x"  # a placeholder's stand-in when a path is matched against patterns


def tool_decl(v: Any, where: str, match: EndpointPattern, pricing: str) -> s.ToolDecl:
    """One `[endpoint.tool]` table of the endpoint `match` (priced by `pricing`)."""
    t = Table(v, where)
    name = t.need("name", _name)
    description = t.need("description", _sentence)
    method = t.get("method", p.one_of(tuple(sorted(METHODS))), None)
    path = t.get("path", p.text, None)
    moves = t.get("moves", p.template, None)
    schema = t.get("input_schema", _input_schema, None)
    array_arg = t.get("array_arg", _arg, None)
    t.done()
    method = _method(match, method, t.at("method"))
    path = _path(match, method, path, t.at("path"))
    if moves is not None and not moves.strip() and pricing != "free":
        raise Bad(t.at("moves"), f"is empty, but the endpoint is priced ({pricing!r}): say what a call costs or sends")
    params = [m.group(1) for seg in path.strip("/").split("/") if (m := _PLACEHOLDER.match(seg))]
    declared = set(schema.get("properties", {})) if schema is not None and array_arg is None else set()
    taken = declared | ({array_arg} if array_arg is not None else set())
    for param in params:
        if param in taken:
            raise Bad(t.at("path"), f"{{{param}}} is also an argument of the input schema: name it differently")
    if array_arg is not None and method in ("GET", "DELETE"):
        raise Bad(t.at("array_arg"), f"a {method} sends no body: an array body needs POST, PUT or PATCH")
    text = json.dumps(schema, separators=(",", ":")) if schema is not None else None
    return s.ToolDecl(name, description, method, path, text, moves, array_arg)


def check_tools(endpoints: tuple[s.Endpoint, ...], request: s.RequestRules, read_paths: tuple[JsonPath, ...]) -> None:
    """The rules that need the whole definition: tool names are unique; a tool's request reaches
    its own endpoint (no earlier one matches it first); an array body is JSON that the
    definition's paths read; a form body or query string carries no objects; an idempotent
    tool's `idempotency_key` argument is not also a vendor parameter."""
    seen: dict[str, int] = {}
    for e in endpoints:
        decl = e.tool
        if decl is None:
            continue
        where = f"endpoint[{e.index}].tool"
        if decl.name in seen:
            raise Bad(f"{where}.name", f"{decl.name!r} is also endpoint[{seen[decl.name]}]'s tool")
        seen[decl.name] = e.index
        sample = _filled(decl.path)
        first = next(x for x in endpoints if x.match.matches(decl.method, sample))
        if first.index != e.index:
            raise Bad(
                f"{where}.path",
                f"{decl.method} {decl.path} is taken by endpoint[{first.index}] {first.match.text!r} first "
                "(a request takes the first endpoint that matches)",
            )
        props = _properties(decl)
        if decl.array_arg is not None:
            if "json" not in request.bodies:
                raise Bad(f"{where}.array_arg", "an array body is JSON: request.bodies must include 'json'")
            if read_paths and all(jp.top is not None for jp in read_paths):
                raise Bad(
                    f"{where}.array_arg",
                    "no path of this definition reads an array body (such paths start with [*]): "
                    "Keybrake would refuse the tool's every call",
                )
        elif "json" not in request.bodies or decl.method in ("GET", "DELETE"):
            carrier = "a query string" if decl.method in ("GET", "DELETE") else "a form body"
            for arg, sub in props.items():
                kinds = sub.get("type") if isinstance(sub, dict) else None
                if kinds == "object" or (isinstance(kinds, list) and "object" in kinds):
                    raise Bad(
                        f"{where}.input_schema.properties.{arg}",
                        f"{carrier} carries plain values or lists of them, not objects",
                    )
        if is_idempotent(decl, request) and IDEMPOTENCY_ARG in props:
            raise Bad(
                f"{where}.input_schema.properties.{IDEMPOTENCY_ARG}",
                f"is the argument that carries the call's {request.idempotency_header} header: name it differently",
            )


def definition_tools(definition: s.Definition) -> tuple[Tool, ...]:
    """The tools a definition declares, in endpoint order; endpoints without a tool table have none."""
    out: list[Tool] = []
    for e in definition.endpoints:
        decl = e.tool
        if decl is None:
            continue
        schema = json.loads(decl.schema_json) if decl.schema_json is not None else {}
        moves = decl.moves if decl.moves is not None else default_moves(e)
        common: dict[str, Any] = {"idempotent": is_idempotent(decl, definition.request)}
        if decl.array_arg is not None:
            items = {"type": "array", "minItems": 1, **({"items": schema} if schema else {})}
            common |= {"body": "json_array", "array_arg": decl.array_arg, "open_params": False}
            common |= {"properties": {decl.array_arg: items}, "required": (decl.array_arg,)}
        else:
            flat = "json" not in definition.request.bodies or decl.method in ("GET", "DELETE")
            common |= {"body": "form_repeat" if flat else "json", "properties": schema.get("properties", {})}
            common |= {"required": tuple(schema.get("required", ()))}
            common |= {"open_params": schema.get("additionalProperties", True)}
        name = f"{definition.name}_{decl.name}"
        out.append(Tool(name, definition.name, decl.method, decl.path, decl.description, moves, **common))
    return tuple(out)


def _properties(decl: s.ToolDecl) -> dict[str, Any]:
    """The tool's vendor arguments as `Tool.properties` holds them."""
    if decl.array_arg is not None:
        return {decl.array_arg: {}}
    schema = json.loads(decl.schema_json) if decl.schema_json is not None else {}
    return dict(schema.get("properties", {}))


def is_idempotent(decl: s.ToolDecl, request: s.RequestRules) -> bool:
    """A POST to a vendor that replays retries under its idempotency header carries a key."""
    return request.idempotency_header is not None and decl.method == "POST"


def default_moves(e: s.Endpoint) -> str:
    """What one call can move or send, from the endpoint's pricing class ("" when free)."""
    if e.pricing == "free":
        return ""
    if e.sends == "items":
        sends = " Sends: each item counts toward the key's daily send cap."
    elif e.sends:
        sends = f" Sends: {e.sends} per call toward the key's daily send cap."
    else:
        sends = ""
    if e.pricing == "fixed":
        return "Costs money: a fixed price per call." + sends
    if e.pricing == "per_item" and e.items is not None:
        what = {"array_length": "each entry of", "addresses": "each email address in", "values": "each value at"}
        names = [jp.text for jp in e.items.paths]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more fields" if len(names) > 3 else "")
        return f"Costs money: priced per item, {what[e.items.count]} {shown}." + sends
    if e.pricing == "amount" and e.amount is not None:
        m = e.amount
        cur = (
            m.currency.upper() if m.currency else f"the currency in {m.currency_path.text if m.currency_path else '?'}"
        )
        return f"Moves money: the amount in {e.amount.path.text} ({e.amount.unit} units of {cur})." + sends
    return (
        "Costs money Keybrake cannot price before the call: it runs only on a key with max_usd_per_call, "
        "which it reserves." + sends
    )


# -- the table's values -------------------------------------------------------------------


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _TOOL_NAME.match(v):
        raise Bad(where, "must be lower-case letters, digits and '_', starting with a letter (at most 48)")
    return v


def _sentence(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Bad(where, "must be a non-empty string: what the call does, for the model that picks tools")
    return v


def _arg(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _ARG.match(v):
        raise Bad(where, "must be an argument name: letters, digits and '_', starting with a letter or '_'")
    return v


def _method(match: EndpointPattern, given: str | None, where: str) -> str:
    allowed = sorted(match.methods) if match.methods is not None else sorted(METHODS)
    if given is None:
        if len(allowed) != 1:
            raise Bad(where, f"is required: {match.text!r} takes {', '.join(allowed)}; name the one the tool calls")
        return allowed[0]
    if given not in allowed:
        raise Bad(where, f"{given!r} is not a method {match.text!r} takes ({', '.join(allowed)})")
    return given


def _path(match: EndpointPattern, method: str, given: str | None, where: str) -> str:
    """The concrete template: `{name}` exactly where `match` has a lone `*` segment (or in the
    part a trailing `**` covers), literal segments elsewhere, matched by `match`."""
    if given is None:
        if any("*" in seg for seg in match.segments):
            raise Bad(where, f"is required: {match.text!r} has wildcards; give the path with {{name}} for each '*'")
        return "/" + "/".join(match.segments)
    if not given.startswith("/") or "//" in given or (given.endswith("/") and given != "/"):
        raise Bad(where, f"{given[:60]!r} must start with '/' and have no empty segments")
    segs = tuple(given[1:].split("/")) if given != "/" else ()
    fixed = match.segments[:-1] if match.rest else match.segments
    if len(segs) < len(fixed) or (not match.rest and len(segs) != len(fixed)):
        raise Bad(where, f"{given!r} is not matched by {match.text!r} (another number of segments)")
    names: list[str] = []
    for i, seg in enumerate(segs):
        m = _PLACEHOLDER.match(seg)
        if (m is None and any(c in seg for c in "{}*%?#")) or seg in (".", ".."):
            raise Bad(where, f"segment {seg!r}: a segment is literal text or one whole {{name}} placeholder")
        if m is not None:
            if m.group(1) == "key_id" or m.group(1) in names:
                why = "reserved (Keybrake's own)" if m.group(1) == "key_id" else "named twice"
                raise Bad(where, f"{seg} is {why}: name it differently")
            names.append(m.group(1))
        if i < len(fixed) and (m is not None) != (fixed[i] == "*"):
            wanted = (
                "a {name} placeholder" if fixed[i] == "*" else f"{fixed[i]!r} (placeholders stand for '*' segments)"
            )
            raise Bad(where, f"segment {i + 1} ({seg!r}) must be {wanted}, as {match.text!r} has there")
    if not match.matches(method, _filled(given)):
        raise Bad(where, f"{given!r} is not matched by {match.text!r}")
    return given


def _filled(path: str) -> tuple[str, ...]:
    """The template's segments with each placeholder a sample id."""
    segs = path.strip("/").split("/") if path != "/" else []
    return tuple(_SAMPLE if _PLACEHOLDER.match(seg) else seg for seg in segs)


def _input_schema(v: Any, where: str) -> dict[str, Any]:
    """A JSON Schema object for the vendor parameters, checked against draft 2020-12."""
    Table(v, where)  # refuses anything but a table
    extra = sorted(set(v) - set(_SCHEMA_KEYS))
    if extra:
        raise Bad(f"{where}.{extra[0]}", f"is not taken at the top of a tool's schema (only {', '.join(_SCHEMA_KEYS)})")
    if v.get("type") != "object":
        raise Bad(f"{where}.type", 'must be "object": a tool takes named arguments')
    props = v.get("properties", {})
    if not isinstance(props, dict) or not all(isinstance(x, dict | bool) for x in props.values()):
        raise Bad(f"{where}.properties", "must be a table of JSON Schemas, one per argument")
    required = p.strings(v.get("required", []), f"{where}.required")
    for i, arg in enumerate(required):
        if arg not in props:
            raise Bad(f"{where}.required[{i}]", f"{arg!r} is not one of the schema's properties")
    if not isinstance(v.get("additionalProperties", True), bool):
        raise Bad(f"{where}.additionalProperties", "must be true or false (whether other arguments are sent on)")
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        raise Bad(where, "holds a value JSON cannot carry (a date or time?)") from None
    _check_schema(v, where)
    return dict(v)


def _check_schema(schema: dict[str, Any], where: str) -> None:
    """Refuse a schema that is not valid draft 2020-12 JSON Schema, naming the keyword."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        at = ".".join(str(x) for x in exc.path)
        raise Bad(f"{where}.{at}" if at else where, f"is not valid JSON Schema: {exc.message[:200]}") from None
