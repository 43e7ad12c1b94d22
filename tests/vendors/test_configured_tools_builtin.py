"""The built-in definitions' MCP tools (Postmark, SendGrid, Segment, the worked example): each
call is a request its vendor parses, and a call's JSON body is exactly its arguments (hypothesis)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema.validators import Draft202012Validator

from keybrake.config import from_env
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors import build_vendors
from keybrake.vendors.base import Estimate, Vendor
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.tools import definition_tools
from keybrake.vendors.configured.vendor import ConfiguredVendor
from keybrake.vendors.tool_catalog import tools_for
from keybrake.vendors.tools import (
    IDEMPOTENCY_ARG,
    Tool,
    ToolRequest,
    build_request,
    derived_idempotency_key,
    request_identity,
)
from tests.vendors.configured_smsco import smsco_toml
from tests.vendors.one_parse_gen import props

pytestmark = pytest.mark.store_free
RATES = {"usd": Decimal(1)}

# --- the built-in definitions' tools ----------------------------------------------------------


def _vendors() -> dict[str, Vendor]:
    return build_vendors(from_env({"KEYBRAKE_SEGMENT_USD_PER_EVENT": "0.0005"}))


VENDORS = _vendors()
BUILT_IN = {t.name: t for n in ("postmark", "sendgrid", "segment") for t in tools_for(VENDORS[n])}
_PM = {"From": "me@acme.example", "To": "a@x.example, B <b@y.example>", "Cc": "c@z.example", "Subject": "Hi",
       "TextBody": "Hello", "Metadata": {"order": "42"}, "Headers": [{"Name": "X-Ref", "Value": "1"}]}  # fmt: skip
EXAMPLES: dict[str, tuple[dict[str, Any], int]] = {  # arguments, the sends Keybrake counts
    "postmark_send_email": (_PM, 3),
    "postmark_send_batch": ({"messages": [_PM, {"From": "me@acme.example", "To": "d@x.example"}]}, 4),
    "sendgrid_send_email": (
        {
            "personalizations": [{"to": [{"email": "a@x.example"}, {"email": "b@y.example", "name": "B"}]}],
            "from": {"email": "me@acme.example"},
            "subject": "Hi",
            "content": [{"type": "text/plain", "value": "Hello"}],
        },
        2,
    ),
    "segment_track": ({"userId": "u1", "event": "Order Completed", "properties": {"total": 12.5}}, 1),
    "segment_identify": ({"userId": "u1", "traits": {"plan": "pro"}}, 1),
}


def test_the_built_in_definitions_offer_their_send_endpoints_as_tools() -> None:
    assert sorted(BUILT_IN) == sorted(EXAMPLES)
    batch = BUILT_IN["postmark_send_batch"]
    assert (batch.body, batch.array_arg, batch.open_params) == ("json_array", "messages", False)
    one = BUILT_IN["postmark_send_email"]
    items = batch.properties["messages"]["items"]  # each message as send_email takes it
    assert (items["properties"], tuple(items["required"])) == (dict(one.properties), one.required)
    for tool in BUILT_IN.values():
        assert tool.moves.startswith("Sends: ") and tool.summary
        assert not tool.idempotent  # none of the three names an idempotency header


def proxy_request(req: ToolRequest) -> tuple[ProxyRequest, tuple[str, ...]]:
    """The tool's request as the proxy receives it, and its path without the `/<vendor>` prefix."""
    headers = (("content-type", req.content_type),) if req.content_type else ()
    path = tuple(req.raw_path.decode().strip("/").split("/"))[1:]
    return ProxyRequest(req.method, req.raw_path, req.query, headers, req.body, "127.0.0.1"), path


def estimate(vendor: Vendor, req: ToolRequest) -> Estimate:
    preq, path = proxy_request(req)
    vreq = vendor.parse(preq, vendor.canonical(req.method, path))
    vendor.precheck(Policy(), vreq)
    return vendor.estimate(vreq.scoped(vendor.check_scope(Policy(), vreq)), RATES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_built_in_tool_call_is_a_request_its_vendor_parses(name: str) -> None:
    tool = BUILT_IN[name]
    args, sends = EXAMPLES[name]
    Draft202012Validator.check_schema(tool.input_schema())
    Draft202012Validator(tool.input_schema()).validate(args)
    req = build_request(tool, args, "key_1")
    assert req.raw_path == f"/{tool.vendor}{tool.path}".encode()
    e = estimate(VENDORS[tool.vendor], req)
    assert (e.pricing, e.sends) == ("priced", sends)


def test_the_worked_example_offers_an_idempotent_send_sms_and_a_get_message() -> None:
    smsco = parse_definition(smsco_toml(), "smsco.toml", "smsco")
    tool, get = definition_tools(smsco)
    assert (get.name, get.method, get.path_params, get.moves) == ("smsco_get_message", "GET", ("message_id",), "")
    fetched = build_request(get, {"message_id": "sms_1"}, "k1")
    assert (fetched.raw_path, fetched.idempotency_key) == (b"/smsco/v1/messages/sms_1", None)
    assert estimate(ConfiguredVendor(smsco), fetched).pricing == "free"
    assert (tool.name, tool.method, tool.path, tool.body, tool.idempotent) == (
        "smsco_send_sms",
        "POST",
        "/v1/messages",
        "json",
        True,
    )
    req = build_request(tool, {"from": "+14155550199", "to": ["+14155550100", "+14155550101"], "text": "hi"}, "k1")
    assert req.idempotency_key is not None and req.idempotency_key.startswith("mcp-")
    assert estimate(ConfiguredVendor(smsco), req).sends == 2


# --- generated: a call's JSON body is its arguments ------------------------------------------

_CHARS = st.characters(exclude_categories=["Cs"])  # JSON text is UTF-8: no lone surrogates
_TEXT = st.text(_CHARS, max_size=12)


def from_schema(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid against the JSON Schema subset the built-in tools use."""
    if schema is True or schema == {} or depth > 6:
        return st.one_of(st.none(), st.booleans(), st.integers(), _TEXT)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(
            _CHARS,
            min_size=schema.get("minLength", 0),
            max_size=min(schema.get("maxLength", 12), 12),
        )
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(from_schema(schema.get("items", {}), depth + 1), min_size=low, max_size=max(low, 2))
    assert kind == "object", schema
    return _object(schema, depth)


def _object(schema: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties", True)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = {}
        for name, sub in properties.items():
            if name == IDEMPOTENCY_ARG or name in required or draw(st.booleans()):
                out[name] = draw(from_schema(sub, depth + 1))
        if isinstance(extra, dict):  # a map (Metadata, custom_args)
            out |= draw(st.dictionaries(_TEXT.filter(lambda k: k not in properties), from_schema(extra), max_size=2))
        return out

    return build()


_JSON_TOOLS = [*sorted(name for name, t in BUILT_IN.items() if t.body in ("json", "json_array")), "smsco_send_sms"]


def _tool(name: str) -> Tool:
    if name == "smsco_send_sms":
        return definition_tools(parse_definition(smsco_toml(), "smsco.toml", "smsco"))[0]
    return BUILT_IN[name]


@st.composite
def a_call(draw: st.DrawFn) -> tuple[Tool, dict[str, Any]]:
    tool = _tool(draw(st.sampled_from(_JSON_TOOLS)))
    return tool, draw(from_schema(tool.input_schema()))


@props(200)
@given(a_call())
def test_a_calls_json_body_is_exactly_its_arguments_without_the_idempotency_key(
    call: tuple[Tool, dict[str, Any]],
) -> None:
    tool, args = call
    Draft202012Validator(tool.input_schema()).validate(args)
    req = build_request(tool, args, "key_1")
    sent = json.loads(req.body)
    expected = {k: v for k, v in args.items() if k != IDEMPOTENCY_ARG}
    assert sent == (expected[tool.array_arg] if tool.array_arg else expected)
    assert req.content_type == "application/json" and req.query == b""
    if tool.idempotent and IDEMPOTENCY_ARG in args:  # the client's key, as this vault key's own
        assert req.idempotency_key == derived_idempotency_key("key_1", "", {IDEMPOTENCY_ARG: args[IDEMPOTENCY_ARG]})
    elif tool.idempotent:  # one derived from the call
        assert req.idempotency_key == derived_idempotency_key("key_1", tool.name, request_identity(req))
    else:
        assert req.idempotency_key is None
