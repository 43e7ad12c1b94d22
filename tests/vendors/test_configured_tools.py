"""MCP tools of vendors defined by a file (docs/vendors.md, `[endpoint.tool]`): what a tool table
accepts and refuses (each refusal naming its key path), the tools of the built-in definitions —
valid JSON Schemas whose requests the vendor's own one parse accepts — and, generated, that a
call's JSON body is exactly its arguments."""

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
from keybrake.vendors.configured.schema import Definition, DefinitionError
from keybrake.vendors.configured.tools import definition_tools
from keybrake.vendors.configured.vendor import ConfiguredVendor
from keybrake.vendors.tool_catalog import tools_for
from keybrake.vendors.tools import IDEMPOTENCY_ARG, Tool, ToolRequest, build_request, derived_idempotency_key
from tests.vendors.configured_smsco import smsco_toml
from tests.vendors.one_parse_gen import props

pytestmark = pytest.mark.store_free
RATES = {"usd": Decimal(1)}

HEAD = """format = 1
name = "acme"
base_url = "https://api.acme.example"
upstream_hosts = ["api.acme.example"]
[credential]
inject = "bearer"
[request]
bodies = {bodies}
{idempotency}
[error]
body = {{ code = "{{code}}", message = "{{message}}" }}
"""


def acme(endpoints: str, *, bodies: str = '["json"]', idempotency: bool = True, tail: str = "") -> str:
    idem = 'idempotency_header = "Idempotency-Key"' if idempotency else ""
    return HEAD.format(bodies=bodies, idempotency=idem) + endpoints + tail


def read(text: str) -> Definition:
    return parse_definition(text, "acme.toml", "acme")


def refusal(text: str) -> DefinitionError:
    with pytest.raises(DefinitionError) as exc:
        read(text)
    return exc.value


def endpoint(match: str, tool: str, pricing: str = 'pricing = "free"') -> str:
    return f'[[endpoint]]\nmatch = "{match}"\n{pricing}\n[endpoint.tool]\n{tool}\n'


SEND = 'name = "send"\ndescription = "Send a message."'


# --- what a tool table declares --------------------------------------------------------------


def test_a_literal_endpoint_is_its_own_path_and_the_schema_feeds_the_tool() -> None:
    d = read(
        acme(
            endpoint(
                "POST /v1/messages",
                SEND + '\ninput_schema = { type = "object", properties = { to = { type = "string" }, '
                'n = { type = "integer" } }, required = ["to"], additionalProperties = false }',
                'pricing = "per_item"\nusd = "0.01"\nitems = { count = "values", paths = ["to"] }\nsends = "items"',
            )
            + '[[endpoint]]\nmatch = "GET /v1/other"\npricing = "free"\n'  # no table: no tool
        )
    )
    (tool,) = definition_tools(d)
    assert (tool.name, tool.vendor, tool.method, tool.path, tool.summary) == (
        "acme_send",
        "acme",
        "POST",
        "/v1/messages",
        "Send a message.",
    )
    assert (tool.body, tool.idempotent, tool.open_params, tool.required) == ("json", True, False, ("to",))
    assert dict(tool.properties) == {"to": {"type": "string"}, "n": {"type": "integer"}}
    assert tool.moves == (
        "Costs money: priced per item, each value at to. Sends: each item counts toward the key's daily send cap."
    )
    schema = tool.input_schema()
    Draft202012Validator.check_schema(schema)
    assert list(schema["properties"]) == ["to", "n", IDEMPOTENCY_ARG]


def test_wildcards_take_a_concrete_path_and_several_methods_name_one() -> None:
    d = read(
        acme(
            endpoint(
                "GET /v1/items/*", 'name = "get_item"\ndescription = "Fetch one item."\npath = "/v1/items/{item_id}"'
            )
            + endpoint(
                "* /v1/things/**",
                'name = "drop_thing"\ndescription = "Delete a thing."\nmethod = "DELETE"\n'
                'path = "/v1/things/{thing}/parts/{part}"',
            ),
            idempotency=False,
        )
    )
    get, drop = definition_tools(d)
    assert (get.method, get.path, get.path_params, get.body, get.moves) == (
        "GET",
        "/v1/items/{item_id}",
        ("item_id",),
        "form_repeat",  # a query string: a list repeats its name, as the definition reads it
        "",
    )
    assert (drop.method, drop.path_params, drop.idempotent) == ("DELETE", ("thing", "part"), False)
    req = build_request(get, {"item_id": "it_1", "expand": ["a", "b"]}, "key_1")
    assert (req.raw_path, req.query, req.body) == (b"/acme/v1/items/it_1", b"expand=a&expand=b", b"")


def test_a_form_only_vendor_sends_a_form_and_post_is_idempotent_only_with_a_header() -> None:
    d = read(acme(endpoint("POST /v1/a", SEND), bodies='["form"]', idempotency=False))
    (tool,) = definition_tools(d)
    assert (tool.body, tool.idempotent, tool.open_params, dict(tool.properties)) == ("form_repeat", False, True, {})


@pytest.mark.parametrize(
    ("pricing", "moves"),
    [
        ('pricing = "free"', ""),
        ('pricing = "fixed"\nusd = "0.005"', "Costs money: a fixed price per call."),
        (
            'pricing = "fixed"\nusd = "0.005"\nsends = 2',
            "Costs money: a fixed price per call. Sends: 2 per call toward the key's daily send cap.",
        ),
        (
            'pricing = "per_item"\nusd = "0.001"\nitems = { count = "addresses", paths = ["to", "cc", "bcc", "x"] }',
            "Costs money: priced per item, each email address in to, cc, bcc and 1 more fields.",
        ),
        (
            'pricing = "amount"\namount = { path = "amount", unit = "minor", currency_path = "currency" }',
            "Moves money: the amount in amount (minor units of the currency in currency).",
        ),
        (
            'pricing = "amount"\namount = { path = "total", unit = "major", currency = "eur" }',
            "Moves money: the amount in total (major units of EUR).",
        ),
        ('pricing = "unpriceable"', "Costs money Keybrake cannot price before the call: it runs only on a key"),
        ('pricing = "fixed"\nusd = "0.005"\n[endpoint.tool]\nmoves = "Charges $0.005."', "Charges $0.005."),
    ],
)
def test_moves_defaults_from_the_pricing_class(pricing: str, moves: str) -> None:
    if "[endpoint.tool]" in pricing:
        price, given = pricing.split("\n[endpoint.tool]\n")
        text = acme(endpoint("POST /v1/a", SEND + "\n" + given, price))
    else:
        text = acme(endpoint("POST /v1/a", SEND, pricing))
    (tool,) = definition_tools(read(text))
    assert tool.moves.startswith(moves) and (moves or tool.moves == "")


# --- what a tool table refuses, by key path ---------------------------------------------------

_PRICED = 'pricing = "fixed"\nusd = "0.01"'


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (acme(endpoint("POST /v1/a", 'description = "x"')), "endpoint[0].tool.name", "is required"),
        (acme(endpoint("POST /v1/a", 'name = "Send"\ndescription = "x"')), "endpoint[0].tool.name", "lower-case"),
        (acme(endpoint("POST /v1/a", 'name = "send"\ndescription = " "')), "endpoint[0].tool.description", "non-empty"),
        (acme(endpoint("POST /v1/a", SEND + '\ncolour = "blue"')), "endpoint[0].tool.colour", "not a known key"),
        (acme(endpoint("POST /v1/a", SEND) + endpoint("POST /v1/b", SEND)), "endpoint[1].tool.name", "endpoint[0]"),
        (acme(endpoint("GET /v1/a/*", SEND)), "endpoint[0].tool.path", "is required"),
        (acme(endpoint("GET /v1/a/*", SEND + '\npath = "/v1/a/b"')), "endpoint[0].tool.path", "placeholder"),
        (acme(endpoint("GET /v1/a/*", SEND + '\npath = "/v1/{x}/b"')), "endpoint[0].tool.path", "'*' segments"),
        (acme(endpoint("GET /v1/a/*", SEND + '\npath = "/v1/a"')), "endpoint[0].tool.path", "number of segments"),
        (acme(endpoint("GET /v1/a*/*", SEND + '\npath = "/v1/b/{x}"')), "endpoint[0].tool.path", "not matched"),
        (acme(endpoint("GET /v1/a/*", SEND + '\npath = "/v1/a/{Sid}.json"')), "endpoint[0].tool.path", "whole"),
        (acme(endpoint("GET /v1/a/*", SEND + '\npath = "/v1/a/{key_id}"')), "endpoint[0].tool.path", "reserved"),
        (acme(endpoint("GET /v1/**", SEND + '\npath = "/v1/{a}/{a}"')), "endpoint[0].tool.path", "named twice"),
        (acme(endpoint("GET /v1/**", SEND + '\npath = "v1"')), "endpoint[0].tool.path", "start with '/'"),
        (acme(endpoint("POST|PUT /v1/a", SEND)), "endpoint[0].tool.method", "is required"),
        (acme(endpoint("* /v1/a", SEND)), "endpoint[0].tool.method", "is required"),
        (acme(endpoint("POST|PUT /v1/a", SEND + '\nmethod = "GET"')), "endpoint[0].tool.method", "not a method"),
        (
            acme(endpoint("POST /v1/a", SEND + '\ninput_schema = { type = "array" }')),
            "endpoint[0].tool.input_schema.type",
            '"object"',
        ),
        (
            acme(
                endpoint(
                    "POST /v1/a", SEND + '\ninput_schema = { type = "object", properties = { x = { type = "strin" } } }'
                )
            ),
            "endpoint[0].tool.input_schema.properties.x.type",
            "not valid JSON Schema",
        ),
        (
            acme(
                endpoint(
                    "POST /v1/a", SEND + '\ninput_schema = { type = "object", properties = { x = { minLength = -1 } } }'
                )
            ),
            "endpoint[0].tool.input_schema.properties.x.minLength",
            "not valid JSON Schema",
        ),
        (
            acme(endpoint("POST /v1/a", SEND + '\ninput_schema = { type = "object", anyOf = [] }')),
            "endpoint[0].tool.input_schema.anyOf",
            "not taken at the top",
        ),
        (
            acme(endpoint("POST /v1/a", SEND + '\ninput_schema = { type = "object", required = ["to"] }')),
            "endpoint[0].tool.input_schema.required[0]",
            "not one of the schema's properties",
        ),
        (
            acme(endpoint("POST /v1/a", SEND + '\ninput_schema = { type = "object", additionalProperties = {} }')),
            "endpoint[0].tool.input_schema.additionalProperties",
            "true or false",
        ),
        (
            acme(endpoint("POST /v1/a", SEND + '\ninput_schema = { type = "object", properties = { x = 1 } }')),
            "endpoint[0].tool.input_schema.properties",
            "one per argument",
        ),
        (
            acme(endpoint("POST /v1/a", SEND + '\ninput_schema = { type = "object", title = 2026-01-01 }')),
            "endpoint[0].tool.input_schema",
            "JSON cannot carry",
        ),
        (
            acme(
                endpoint(
                    "POST /v1/*",
                    SEND + '\npath = "/v1/{id}"\ninput_schema = { type = "object", properties = { id = {} } }',
                )
            ),
            "endpoint[0].tool.path",
            "also an argument",
        ),
        (
            acme(
                endpoint(
                    "POST /v1/a", SEND + '\ninput_schema = { type = "object", properties = { idempotency_key = {} } }'
                )
            ),
            "endpoint[0].tool.input_schema.properties.idempotency_key",
            "idempotency-key header",
        ),
        (acme(endpoint("POST /v1/a", SEND + '\nmoves = ""', _PRICED)), "endpoint[0].tool.moves", "is priced"),
        (
            acme(
                '[[endpoint]]\nmatch = "GET /v1/keys/**"\npricing = "free"\nguarded = true\n'
                + endpoint("GET /v1/**", SEND + '\npath = "/v1/keys"')
            ),
            "endpoint[1].tool.path",
            "taken by endpoint[0]",
        ),
        (
            acme(endpoint("POST /v1/a", SEND + '\narray_arg = "messages"'), bodies='["form"]'),
            "endpoint[0].tool.array_arg",
            "must include 'json'",
        ),
        (
            acme(
                endpoint("POST /v1/a", SEND + '\narray_arg = "messages"'),
                tail='[[scope]]\nfield = "allowed_to"\nmatch = "exact"\npaths = ["to"]\n',
            ),
            "endpoint[0].tool.array_arg",
            "reads an array body",
        ),
        (
            acme(endpoint("GET /v1/a", SEND + '\narray_arg = "messages"')),
            "endpoint[0].tool.array_arg",
            "sends no body",
        ),
        (
            acme(
                endpoint(
                    "POST /v1/a",
                    SEND + '\ninput_schema = { type = "object", properties = { m = { type = "object" } } }',
                ),
                bodies='["form"]',
            ),
            "endpoint[0].tool.input_schema.properties.m",
            "a form body carries plain values",
        ),
        (
            acme(
                endpoint(
                    "GET /v1/a",
                    SEND + '\ninput_schema = { type = "object", properties = { m = { type = ["string", "object"] } } }',
                )
            ),
            "endpoint[0].tool.input_schema.properties.m",
            "a query string carries plain values",
        ),
    ],
)
def test_each_refusal_names_the_key_path(text: str, where: str, what: str) -> None:
    err = refusal(text)
    assert err.where == where, (err.where, err.what)
    assert what in err.what, err.what
    assert str(err).startswith(f"acme.toml: {where}: ")


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
        assert req.idempotency_key == derived_idempotency_key("key_1", tool.name, args)
    else:
        assert req.idempotency_key is None
