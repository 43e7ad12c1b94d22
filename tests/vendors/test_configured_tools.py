"""MCP tools of vendors defined by a file (docs/vendors.md, `[endpoint.tool]`): what a tool table
accepts and refuses (each refusal naming its key path), the tools of the built-in definitions —
valid JSON Schemas whose requests the vendor's own one parse accepts — and, generated, that a
call's JSON body is exactly its arguments."""

from __future__ import annotations

from decimal import Decimal

import pytest
from jsonschema.validators import Draft202012Validator

from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.schema import Definition, DefinitionError
from keybrake.vendors.configured.tools import definition_tools
from keybrake.vendors.tools import IDEMPOTENCY_ARG, build_request

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
