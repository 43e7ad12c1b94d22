"""The client against the server's own OpenAPI description: every call it can make exists with
the parameters, headers and body fields it sends, and its models read what the schemas define."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from keybrake_client import models as m
from keybrake_client import ops
from tests.harness import KeybrakeThread

pytestmark = pytest.mark.store_free  # no store of its own: runs once, in the first pass

# One call of every `Op` builder, with every optional parameter it can send set.
SAMPLES: dict[str, ops.Op[Any]] = {
    "issue_key": ops.issue_key(
        "stripe",
        policy={"daily_usd_cap": 1},
        label="a:b",
        credential="default",
        expires_in="1h",
        metadata={"agent_run_id": "r"},
        idempotency_key="k",
    ),
    "get_key": ops.get_key("vk_x"),
    "list_keys": ops.list_keys(
        label_prefix="a:",
        label="a:b",
        vendor="stripe",
        credential="default",
        status="active",
        metadata={"agent_run_id": "r"},
        limit=5,
        cursor="c",
    ),
    "update_key": ops.update_key(
        "vk_x", {"label": "x", "metadata": {"a": "b"}, "policy": {}, "expires_in": "1h", "expires_at": "2030-01-01"}
    ),
    "revoke_key": ops.revoke_key("vk_x", "why"),
    "bulk_revoke": ops.bulk_revoke(label_prefix="a:", vendor="stripe", credential="default", all=True, reason="r"),
    "add_credential": ops.add_credential("stripe", "n", "sk_test_x", "https://api.stripe.com"),
    "list_credentials": ops.list_credentials(),
    "get_credential": ops.get_credential("n"),
    "rotate_credential": ops.rotate_credential("n", "sk_test_x", "https://api.stripe.com"),
    "delete_credential": ops.delete_credential("n", True),
    "audit_query": ops.audit_query({f: "x" for f in (*ops.AUDIT_FILTERS, "since", "until")}, {"a": "b"}, 5, "c"),
    "audit_get": ops.audit_get("kbr_x"),
    "audit_export": ops.audit_export("jsonl", {f: "x" for f in (*ops.AUDIT_FILTERS, "since", "until")}, {"a": "b"}),
    "spend": ops.spend(since=0, until=1, group_by="key", label_prefix="a:", vendor="stripe", timezone="UTC"),
    "create_budget": ops.create_budget(
        {
            "name": "b",
            "scope": "all",
            "daily_usd_cap": 1,
            "monthly_usd_cap": 1,
            "total_usd_cap": 1,
            "daily_request_cap": 1,
            "timezone": "UTC",
        }
    ),
    "list_budgets": ops.list_budgets(),
    "get_budget": ops.get_budget("bud_x"),
    "update_budget": ops.update_budget("bud_x", {"name": "b", "daily_usd_cap": None, "timezone": "UTC"}),
    "delete_budget": ops.delete_budget("bud_x"),
    "create_alert": ops.create_alert(
        {"type": "webhook", "url": "https://x", "events": ["cap.hit"], "thresholds": [50], "anomaly_factor": 3}
    ),
    "list_alerts": ops.list_alerts(),
    "delete_alert": ops.delete_alert("alert_x"),
    "list_deliveries": ops.list_deliveries("failed", 5, "c"),
    "list_approvals": ops.list_approvals("pending", "vk_x", 5, "c"),
    "get_approval": ops.get_approval("apr_x"),
    "approve_approval": ops.approve_approval("apr_x", "ok", "12.5"),
    "deny_approval": ops.deny_approval("apr_x", "no"),
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data: Path = tmp_path_factory.mktemp("openapi") / "data"
    with KeybrakeThread(data) as server:
        yield httpx.get(f"{server.url}/openapi.json", timeout=30).json()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _properties(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """Every property any branch of the schema (allOf/anyOf/oneOf) defines."""
    schema = _resolve(doc, schema)
    names = set(schema.get("properties", {}))
    for branch in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(branch, []):
            names |= _properties(doc, sub)
    return names


def test_every_op_builder_is_sampled() -> None:
    builders = {
        name
        for name, fn in inspect.getmembers(ops, inspect.isfunction)
        if fn.__module__ == ops.__name__ and str(inspect.signature(fn).return_annotation).startswith("Op[")
    }
    assert builders == set(SAMPLES), "sample every Op builder in this test"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_call_exists_with_what_it_sends(openapi: dict[str, Any], name: str) -> None:
    op = SAMPLES[name]
    operation = openapi["paths"].get(op.path, {}).get(op.method.lower())
    assert operation is not None, f"{op.method} {op.path} is not in the server's /openapi.json"
    params = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
    for path_param in op.path_params:
        assert ("path", path_param) in params, f"{name}: path parameter {path_param}"
    for q in op.query:
        if q.startswith("metadata."):
            assert "metadata.<k>=<v>" in operation.get("description", ""), f"{name}: {q} is not documented"
        else:
            assert ("query", q) in params, f"{name}: query parameter {q} is not declared"
    for h in op.headers:
        assert ("header", h.lower()) in params, f"{name}: header {h} is not declared"
    if op.body is None:
        return
    assert "requestBody" in operation, f"{name} sends a body the operation does not take"
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    unknown = set(op.body) - _properties(openapi, schema)
    assert not unknown, f"{name}: body fields {unknown} are not in the request schema"


def _answer_schema(openapi: dict[str, Any], op: ops.Op[Any]) -> dict[str, Any]:
    responses = openapi["paths"][op.path][op.method.lower()]["responses"]
    ok = next(v for k, v in responses.items() if k.startswith("2"))
    return _resolve(openapi, ok["content"]["application/json"]["schema"])


@pytest.mark.parametrize("name", sorted(n for n, op in SAMPLES.items() if op.model is not None))
def test_the_answer_model_reads_the_schema(openapi: dict[str, Any], name: str) -> None:
    op = SAMPLES[name]
    assert op.model is not None
    schema = _answer_schema(openapi, op)
    _same_fields(openapi, op.model, schema, name)


def _same_fields(openapi: dict[str, Any], model: type[BaseModel], schema: dict[str, Any], where: str) -> None:
    fields = set(model.model_fields)
    props = _properties(openapi, schema)
    assert fields <= props, f"{where}: {model.__name__} reads {fields - props}, which the schema does not define"
    assert set(schema.get("required", [])) <= fields, (
        f"{where}: {model.__name__} misses {set(schema.get('required', [])) - fields}"
    )
    if "data" in fields and "data" in schema.get("properties", {}):  # a page: its items too
        items = _resolve(openapi, schema["properties"]["data"]["items"])
        item_model = model.model_fields["data"].annotation.__args__[0]  # type: ignore[union-attr]
        _same_fields(openapi, item_model, items, f"{where}.data")


def test_nested_models_read_their_schemas(openapi: dict[str, Any]) -> None:
    usage = openapi["components"]["schemas"]["Usage"]
    _same_fields(openapi, m.Usage, usage, "Usage")
