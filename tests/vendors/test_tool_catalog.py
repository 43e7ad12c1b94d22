"""The built-in MCP tools (keybrake.vendors.tool_catalog) against the vendors' documented endpoints:
each tool's method and path is an operation of the vendor's official OpenAPI spec, and each
argument it declares is a parameter of that operation, of a documented type and enum value
(tests/fixtures/mcp_tool_endpoints.json, extracted from the specs named in its `source`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from keybrake.vendors.tool_catalog import RESEND_TOOLS, STRIPE_TOOLS, TWILIO_TOOLS
from keybrake.vendors.tools import Tool

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_tool_endpoints.json"
SPEC: dict[str, Any] = json.loads(FIXTURE.read_text())
ALL_TOOLS = (*STRIPE_TOOLS, *TWILIO_TOOLS, *RESEND_TOOLS)

# A tool's path parameter the spec names otherwise: {key_id} is where Twilio's SDKs put the Account
# SID; Stripe's spec calls the subscription of DELETE /v1/subscriptions/… `subscription_exposed_id`.
PLACEHOLDERS = {"key_id": "AccountSid"}
RENAMED = {("stripe_cancel_subscription", "subscription"): "subscription_exposed_id"}

# What the tools declare that the fixture's Stripe spec (API version 2020-08-27, the newest whole
# spec3.json the snapshot holds) predates. Each entry: (tool, argument, enum value or None).
NEWER_THAN_SPEC = {
    # capture_method=automatic_async: Stripe added it in 2023 (asynchronous capture); stripe-python
    # 16 types it (PaymentIntentCreateParams.capture_method).
    ("stripe_create_payment_intent", "capture_method", "automatic_async"),
}


def _ids(tools: tuple[Tool, ...]) -> list[Any]:
    return [pytest.param(t, id=t.name) for t in tools]


def _lookup(tool: Tool) -> tuple[str, dict[str, Any]]:
    """The spec's path template for the tool's and its operation."""

    def spec_name(m: re.Match[str]) -> str:
        name = m.group(1)
        return "{" + RENAMED.get((tool.name, name), PLACEHOLDERS.get(name, name)) + "}"

    key = f"{tool.method} {re.sub(r'{([A-Za-z_]+)}', spec_name, tool.path)}"
    ops = SPEC["operations"][tool.vendor]
    assert key in ops, f"{tool.name}: {key} is not an operation of {tool.vendor}'s spec ({sorted(ops)})"
    return key.split(" ", 1)[1], ops[key]


def _operation(tool: Tool) -> dict[str, Any]:
    return _lookup(tool)[1]


def _spec_path(tool: Tool) -> str:
    return _lookup(tool)[0]


def _documented(tool: Tool, op: dict[str, Any]) -> dict[str, Any]:
    """The operation's parameters where the tool sends its arguments: the query of a GET, the body
    of a POST; Stripe documents a DELETE's parameters in a form body its SDKs send as the query."""
    if tool.method == "GET":
        return dict(op["query"])
    if tool.method == "DELETE":
        return {**op["query"], **op.get("body", {})}
    return dict(op.get("body", {}))


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    return set(t) if isinstance(t, list) else {str(t)}


def test_fixture_names_its_sources_and_covers_every_tool() -> None:
    sources = SPEC["source"]
    assert set(sources) == {"stripe", "twilio", "resend"}
    for s in sources.values():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", s["repository"]) and re.fullmatch(r"[0-9a-f]{40}", s["commit"])
        assert not s["path"].startswith("/")
    used = {(t.vendor, f"{t.method} {t.path}") for t in ALL_TOOLS}
    assert sum(len(ops) for ops in SPEC["operations"].values()) == len(used)


@pytest.mark.parametrize("tool", _ids(ALL_TOOLS))
def test_tool_is_a_documented_operation(tool: Tool) -> None:
    path, op = _lookup(tool)
    assert sorted(op["path"]) == sorted(re.findall(r"{([A-Za-z_]+)}", path))
    if tool.body in ("json", "json_array") and tool.method == "POST":
        assert op["body_type"] == "application/json"
        assert op.get("body_is_array", False) == (tool.body == "json_array")
    elif tool.method == "POST":
        assert op["body_type"] == "application/x-www-form-urlencoded"
    if tool.idempotent and tool.vendor == "resend":
        assert "Idempotency-Key" in op["headers"]


def _declared(tool: Tool) -> dict[str, Any]:
    """The vendor parameters a tool declares (a batch tool's: those of each item)."""
    if tool.array_arg is not None:
        items: dict[str, Any] = tool.properties[tool.array_arg]["items"]
        return dict(items["properties"])
    return dict(tool.properties)


@pytest.mark.parametrize("tool", _ids(ALL_TOOLS))
def test_every_declared_argument_is_a_documented_parameter(tool: Tool) -> None:
    documented = _documented(tool, _operation(tool))
    unknown = sorted(set(_declared(tool)) - set(documented))
    assert not unknown, f"{tool.name} declares {unknown}, which {tool.method} {_spec_path(tool)} does not document"


@pytest.mark.parametrize("tool", _ids(ALL_TOOLS))
def test_every_declared_argument_has_a_documented_type_and_enum(tool: Tool) -> None:
    documented = _documented(tool, _operation(tool))
    for name, schema in _declared(tool).items():
        spec = documented[name]
        _check(tool, name, schema, spec)
        if "item_properties" in spec:
            for sub, sub_schema in schema["items"].get("properties", {}).items():
                assert sub in spec["item_properties"], f"{tool.name}: {name}[].{sub} is not documented"
                _check(tool, f"{name}[].{sub}", sub_schema, spec["item_properties"][sub])


def _check(tool: Tool, name: str, schema: dict[str, Any], spec: dict[str, Any]) -> None:
    assert _types(schema) <= set(spec["types"]), f"{tool.name}: {name} is {schema['type']}, spec: {spec['types']}"
    if "enum" in schema:
        newer = {e for (t, a, e) in NEWER_THAN_SPEC if (t, a) == (tool.name, name)}
        assert "enum" in spec, f"{tool.name}: {name} declares an enum the spec does not"
        assert set(schema["enum"]) - newer <= set(spec["enum"]), f"{tool.name}: {name} {schema['enum']}"


@pytest.mark.parametrize("tool", _ids(ALL_TOOLS))
def test_what_the_vendor_requires_the_tool_requires(tool: Tool) -> None:
    required = _operation(tool).get("required", [])
    if tool.array_arg is not None:
        mine = set(tool.properties[tool.array_arg]["items"]["required"])
    else:
        mine = set(tool.required)
    assert set(required) <= mine, f"{tool.name}: the vendor requires {sorted(set(required) - mine)}"


def test_newer_than_spec_entries_are_still_needed() -> None:
    """An allowlisted value the spec documents, or the tool no longer declares, is stale."""
    for tool_name, arg, value in NEWER_THAN_SPEC:
        tool = next(t for t in ALL_TOOLS if t.name == tool_name)
        assert value in tool.properties[arg]["enum"]
        assert value not in _documented(tool, _operation(tool))[arg].get("enum", [])
