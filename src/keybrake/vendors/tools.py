"""MCP tools as plain data: what each tool sends, its input schema, and the request it becomes
(docs/mcp.md). Pure: no I/O, no MCP SDK — `keybrake.mcp` serves these.

A `Tool` is one vendor endpoint. A call's arguments become exactly the request the vendor's SDK
sends for it: path parameters fill the path template (`{name}`; `{key_id}` is the vault key's
id, where Twilio's SDKs put the Account SID), the rest are the vendor's parameters — a
form body the way the vendor's SDK encodes one (Stripe: `metadata[k]=v`, `items[0][price]=…`;
Twilio: a list repeats its name), a JSON body, or, for a GET, the query string. Nothing an agent
passes is dropped: a parameter the tool does not declare is sent on as given (the vendor rejects
what it does not know, exactly as with its SDK), and a path parameter that could leave its
segment is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from keybrake.core.money import human_usd
from keybrake.core.patterns import EndpointPattern
from keybrake.core.policy import Policy

# The argument a client may set to choose the idempotency key itself (docs/mcp.md, idempotency).
IDEMPOTENCY_ARG = "idempotency_key"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
# A path parameter is one id: never a `/`, `.`, `%`, `?` or `#` that could move the call (no vendor
# id has a dot; Twilio's paths end `{Sid}.json`).
_PATH_VALUE = re.compile(r"[A-Za-z0-9_:-]{1,255}")
BODIES = ("form_nested", "form_repeat", "json", "json_array")
_MAX_DEPTH = 8
_MAX_NAME = 512  # characters of one form parameter's name, nesting included
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# A GET's parameters go in the URL: bounded as a request line is (HTTP servers refuse far less).
MAX_QUERY_BYTES = 8192


class ToolInputError(ValueError):
    """Arguments a tool cannot turn into a request; the message names the argument and the rule."""


@dataclass(frozen=True)
class Tool:
    """One MCP tool: a vendor endpoint with its arguments.

    `path`: the vendor path template (`/v1/payment_intents/{intent}/capture`), without the
    `/{vendor}` prefix. `body`: how the parameters are sent on POST/PATCH/PUT — `form_nested`
    (Stripe's encoding), `form_repeat` (Twilio's), `json` (an object), `json_array` (the value of
    the one array argument `array_arg` is the body). `properties`/`required`: the JSON Schema of the
    vendor parameters (path parameters are added by `input_schema`). `moves`: what one call can
    move or send, in a sentence a model reads ("" for a read). `idempotent`: the vendor replays a
    retry sent under the same idempotency key, so a call carries one (`idempotency_key`).
    """

    name: str
    vendor: str
    method: str
    path: str
    summary: str
    moves: str = ""
    properties: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    required: tuple[str, ...] = ()
    body: str = "json"
    array_arg: str | None = None
    idempotent: bool = False
    open_params: bool = True  # parameters beyond `properties` are sent on as given
    # Groups of which at least one argument is required (Twilio: From or MessagingServiceSid; Body,
    # MediaUrl or ContentSid).
    one_of_each: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if self.body not in BODIES:
            raise ValueError(f"tool {self.name}: body must be one of {BODIES}")
        if (self.body == "json_array") != (self.array_arg is not None):
            raise ValueError(f"tool {self.name}: a json_array body names its array_arg, and only it")

    @property
    def path_params(self) -> tuple[str, ...]:
        """The path template's parameters an agent supplies (not `key_id`, which Keybrake fills)."""
        return tuple(p for p in _PLACEHOLDER.findall(self.path) if p != "key_id")

    def segments(self) -> tuple[str | None, ...]:
        """The path template's segments, None for a parameter (any one id)."""
        return tuple(None if _PLACEHOLDER.fullmatch(s) else s for s in self.path.strip("/").split("/"))

    def input_schema(self) -> dict[str, Any]:
        """The tool's JSON Schema (draft 2020-12 object): path parameters, the vendor parameters
        and, on an idempotent tool, the optional `idempotency_key`."""
        props: dict[str, Any] = {
            p: {"type": "string", "pattern": "^" + _PATH_VALUE.pattern + "$", "description": f"The {p} id."}
            for p in self.path_params
        }
        props.update(dict(self.properties))
        if self.idempotent:
            props[IDEMPOTENCY_ARG] = {
                "type": "string",
                "minLength": 1,
                "maxLength": 200,
                "description": "Optional. Calls with the same key are one call at the vendor (a retry is not new "
                "spend). Left out, Keybrake derives one from this key, this tool and the request these arguments "
                "build; pass a new value to make an identical call again on purpose.",
            }
        schema: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "required": [*self.path_params, *self.required],
            "additionalProperties": self.open_params,
        }
        if self.one_of_each:
            schema["allOf"] = [{"anyOf": [{"required": [name]} for name in group]} for group in self.one_of_each]
        return schema


@dataclass(frozen=True)
class ToolRequest:
    """The request a tool call becomes: `raw_path` includes the `/{vendor}` prefix."""

    method: str
    raw_path: bytes
    query: bytes
    body: bytes
    content_type: str | None
    idempotency_key: str | None


def build_request(
    tool: Tool,
    args: Mapping[str, Any],
    key_id: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    secret: bytes = b"",
) -> ToolRequest:
    """`args` (already valid against `tool.input_schema()`) → the vendor request.

    Encoding stops as soon as the body passes `max_body_bytes` (the query of a GET or DELETE,
    MAX_QUERY_BYTES): what it builds is bounded whatever the arguments' shape (a list under a long
    name repeats the name once per item). Raises ToolInputError for a path parameter that is not
    one id, `idempotency_key` on a tool without one, a null, NaN or Infinity, a nesting deeper than
    8 levels, text that is not valid Unicode (a lone surrogate), a value the body encoding cannot
    carry, or a request past those limits. `secret` keys the idempotency keys it derives
    (`derived_idempotency_key`): the server's, so no one else can compute them.
    """
    try:
        _check_depth(args, 0)  # before anything walks the arguments whole
        return _build(tool, args, key_id, max_body_bytes, secret)
    except UnicodeEncodeError:
        raise ToolInputError("an argument holds text that is not valid Unicode (a lone surrogate)") from None
    except RecursionError:
        raise ToolInputError(f"arguments nest deeper than {_MAX_DEPTH} levels") from None


def _build(tool: Tool, args: Mapping[str, Any], key_id: str, max_body_bytes: int, secret: bytes) -> ToolRequest:
    params = dict(args)
    if IDEMPOTENCY_ARG in params and not tool.idempotent:
        raise ToolInputError(
            f"{tool.name} takes no {IDEMPOTENCY_ARG}: the vendor has no idempotency key for this call, so calling "
            "again acts again"
        )
    idem = params.pop(IDEMPOTENCY_ARG, None)
    values = {"key_id": key_id}
    for p in tool.path_params:
        v = params.pop(p, None)
        if not isinstance(v, str) or not _PATH_VALUE.fullmatch(v):
            shown = repr(v)[:60]
            raise ToolInputError(f"argument {p!r} must be one id (letters, digits, '_', '-', ':'), got {shown}")
        values[p] = v
    path = _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), tool.path)
    req = _encode(tool, params, f"/{tool.vendor}{path}".encode(), max_body_bytes)
    if idem is not None:  # the client's: sent as this key's own, so another run's value never meets it
        idem = derived_idempotency_key(key_id, "", {IDEMPOTENCY_ARG: idem}, secret=secret)
    elif tool.idempotent and tool.method == "POST":  # from what is sent, not how the arguments were spelt
        idem = derived_idempotency_key(key_id, tool.name, request_identity(req), secret=secret)
    return replace(req, idempotency_key=idem)


def _encode(tool: Tool, params: dict[str, Any], raw_path: bytes, max_body_bytes: int) -> ToolRequest:
    if tool.method in ("GET", "DELETE"):
        query = _encode_form(params, tool.body != "form_repeat", MAX_QUERY_BYTES, "query string")
        return ToolRequest(tool.method, raw_path, query, b"", None, None)
    if tool.body == "json_array":
        assert tool.array_arg is not None
        body: Any = params.pop(tool.array_arg, None)
        if params:
            raise ToolInputError(f"arguments {sorted(params)} are not taken by {tool.name}: put them in each item")
        return ToolRequest(tool.method, raw_path, b"", _json(body, max_body_bytes), "application/json", None)
    if tool.body == "json":
        return ToolRequest(tool.method, raw_path, b"", _json(params, max_body_bytes), "application/json", None)
    form = _encode_form(params, tool.body == "form_nested", max_body_bytes, "body")
    return ToolRequest(tool.method, raw_path, b"", form, "application/x-www-form-urlencoded", None)


def request_identity(req: ToolRequest) -> dict[str, Any]:
    """What makes two built requests the same call at the vendor: method, path, query and body,
    with the order of distinct form fields and of JSON object keys left out (neither changes what
    the vendor reads; the order of a field's repeats and of array items is kept), and a JSON number
    that is whole read as an integer (JSON has one number type). Two tool calls whose arguments
    differ only in spelling — `1500.0` for `1500`, an empty `metadata: {}` that sends nothing —
    build the same request and so have the same identity."""

    def pairs(encoded: bytes) -> list[tuple[str, str]]:
        return sorted(parse_qsl(encoded.decode(), keep_blank_values=True), key=lambda kv: kv[0])  # stable

    body: Any = pairs(req.body) if req.content_type == "application/x-www-form-urlencoded" else None
    if req.content_type == "application/json":
        body = json.loads(req.body, parse_float=_number)  # dumped again with sorted keys (derived_idempotency_key)
    return {"method": req.method, "path": req.raw_path.decode(), "query": pairs(req.query), "body": body}


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def derived_idempotency_key(key_id: str, tool: str, args: Mapping[str, Any], *, secret: bytes = b"") -> str:
    """`mcp-` + HMAC-SHA256 under `secret` (hex, 40 characters) of the vault key's id, the tool and
    `args` in canonical JSON — for a derived key, the request it sends (request_identity): a
    client's retry of the same call carries the same key, however its arguments are spelt. A
    client's own `idempotency_key` is hashed the same way with the vault key's id (tool ""): the
    same value from the same run is the same call, from another run another one. Keyed with a
    server secret, no one who knows a key id can compute another run's keys."""
    canonical = json.dumps({"key": key_id, "tool": tool, "args": args}, sort_keys=True, separators=(",", ":"))
    return "mcp-" + hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()[:40]


def _json(value: Any, limit: int) -> bytes:
    try:
        out = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise ToolInputError("an argument is NaN or Infinity, which JSON cannot carry") from None
    if len(out) > limit:
        raise ToolInputError(f"the request body would be larger than {limit} bytes")
    return out


def _encode_form(params: Mapping[str, Any], nested: bool, limit: int, what: str) -> bytes:
    """The form encoding of `params`, refused (ToolInputError) as soon as it passes `limit` bytes."""
    pieces: list[str] = []
    size = 0
    for pair in _form(params, nested=nested):
        piece = urlencode([pair])
        size += len(piece) + 1
        if size > limit + 1:
            raise ToolInputError(f"the request {what} would be larger than {limit} bytes")
        pieces.append(piece)
    return "&".join(pieces).encode()


def _check_depth(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ToolInputError(f"arguments nest deeper than {_MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        for v in value.values():
            _check_depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_depth(v, depth + 1)


def _form(params: Mapping[str, Any], *, nested: bool) -> Iterator[tuple[str, str]]:
    """Form pairs: Stripe's nesting (`a[b]`, `a[0][c]`) when `nested`, else a list repeats its name."""
    for name, value in params.items():
        yield from _pairs(name, value, nested)


def _pairs(name: str, value: Any, nested: bool) -> Iterator[tuple[str, str]]:
    if value is None:
        raise ToolInputError(f"argument {name[:80]!r} is null: leave it out instead")
    if len(name) > _MAX_NAME:
        raise ToolInputError(f"argument name {name[:40]!r}… is longer than {_MAX_NAME} characters")
    if isinstance(value, bool):
        yield name, "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        raise ToolInputError(f"argument {name[:80]!r} is NaN or Infinity, which no vendor takes")
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        yield name, str(int(value))  # JSON's 700.0 is the integer 700 (a form has no number types)
    elif isinstance(value, (int, float, str)):
        yield name, str(value)
    elif isinstance(value, Mapping):
        if not nested:
            raise ToolInputError(f"argument {name[:80]!r} must be a plain value or a list of them, not an object")
        for k, v in value.items():
            yield from _pairs(f"{name}[{k}]", v, nested)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if nested:
                yield from _pairs(f"{name}[{i}]", v, nested)
            elif isinstance(v, (Mapping, list)):
                raise ToolInputError(f"argument {name[:80]!r} must be a list of plain values")
            else:
                yield from _pairs(name, v, nested)
    else:
        raise ToolInputError(f"argument {name[:80]!r} has a value JSON cannot carry")


# -- which tools a key's policy admits, and what each may move -------------------------------


def admitted(tool: Tool, policy: Policy) -> bool:
    """Whether the key's `allowed_endpoints` can admit some call of this tool (every tool of the
    key's vendor when the policy has no allowlist). A path parameter matches any one segment."""
    if policy.allowed_endpoints is None:
        return True
    segs = tool.segments()
    return any(_could_match(p, tool.method, segs) for p in policy.allowed_endpoints)


def _could_match(pattern: EndpointPattern, method: str, segs: tuple[str | None, ...]) -> bool:
    if pattern.methods is not None and method not in pattern.methods:
        return False
    fixed = pattern.segments[:-1] if pattern.rest else pattern.segments
    if len(segs) < len(fixed) or (not pattern.rest and len(segs) != len(fixed)):
        return False
    # A parameter segment can hold whatever the pattern's segment asks (a literal id, a glob).
    filled = tuple(
        s if s is not None else (fixed[i].replace("*", "x") if i < len(fixed) else "x") for i, s in enumerate(segs)
    )
    return pattern.matches(method, filled)


def blast_radius(tool: Tool, policy: Policy, expires_at: str) -> str:
    """The limits a model should see in the tool's description: what one call can move and the
    key's caps, approval rules and scope that hold it (amounts in USD)."""
    if tool.moves:
        parts = [tool.moves]
    elif tool.method == "GET":
        parts = ["Reads only: moves no money and sends nothing."]
    else:
        parts = ["Changes data at the vendor; moves no money and sends nothing."]
    caps = []
    if policy.max_usd_per_call is not None:
        caps.append(f"at most {human_usd(policy.max_usd_per_call)} per call")
    if policy.daily_usd_cap is not None:
        caps.append(f"{human_usd(policy.daily_usd_cap)} a day")
    if policy.total_usd_cap is not None:
        caps.append(f"{human_usd(policy.total_usd_cap)} in total")
    if policy.daily_send_cap is not None:
        caps.append(f"{policy.daily_send_cap} sends a day")
    if policy.max_requests_per_hour is not None:
        caps.append(f"{policy.max_requests_per_hour} calls an hour")
    if caps:
        parts.append("This key's caps: " + ", ".join(caps) + "; a call past one is refused before it is sent.")
    if policy.approval_above_usd is not None:
        parts.append(f"Calls above {human_usd(policy.approval_above_usd)} wait for a person's approval.")
    held = policy.approval_endpoints or ()
    if any(_could_match(p, tool.method, tool.segments()) for p in held):
        parts.append("Calls of this tool may wait for a person's approval.")
    if policy.customer_allowlist is not None:  # the ids, so a model can pick one (newcomer run)
        listed = _scope_rule("customer_allowlist", sorted(policy.customer_allowlist))
        parts.append(f"Only these customers may be acted for ({listed}).")
    scoped = [_scope_rule(k, policy.vendor_data[k]) for k in sorted(policy.vendor_data) if k.startswith("allowed_")]
    if scoped:
        parts.append("Scope on this key: " + "; ".join(scoped) + "; a call outside it is refused.")
    parts.append(f"The key expires at {expires_at}.")
    return " ".join(parts)


def _scope_rule(name: str, value: Any) -> str:
    """`allowed_to_domains: example.com, *.example.org` (at most 5 values shown, then how many more)."""
    if not isinstance(value, list | tuple):
        return f"{name}: {str(value)[:60]}"
    shown = ", ".join(str(v)[:60] for v in value[:5])
    more = f" and {len(value) - 5} more" if len(value) > 5 else ""
    return f"{name}: {shown or 'none'}{more}"
