"""/openapi.json: valid OpenAPI 3.1, every operation's answers declared, and real answers match them."""

from __future__ import annotations

import re
from typing import Any

import httpx
from openapi_spec_validator import validate

from keybrake.admin.key_models import key_models
from keybrake.admin.keys import render_policy
from keybrake.admin.schemas import AuditRow
from keybrake.store.base import AUDIT_FIELDS
from tests.admin.spec import Spec
from tests.approval_holds import hold
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, REAL_SECRET, KeybrakeThread
from tests.stripe_sdk import client

JSON_ANSWERS_EXEMPT = {("get", "/v1/audit/export"), ("get", "/metrics")}  # streamed CSV/JSONL; Prometheus text


def test_the_document_is_openapi_3_1_with_every_answer_declared(kb: KeybrakeThread) -> None:
    spec = httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json()
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["openapi"].startswith("3.1.")
    operations = [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert len(operations) == 31
    for method, path, op in operations:
        assert op["operationId"].isidentifier(), op["operationId"]
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert len(ok) == 1, (method, path)
        content = op["responses"][ok[0]]["content"]
        if (method, path) in JSON_ANSWERS_EXEMPT:
            assert "application/json" not in content
            continue
        assert content["application/json"]["schema"], (method, path)  # a model, never "string"
        if path.startswith("/v1/"):
            assert op["security"] == [{"AdminToken": []}]
            for status in ("400", "401", "429", "503"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # never answered


def test_answer_models_name_every_field_the_store_and_policy_have() -> None:
    assert list(AuditRow.model_fields) == ["object", *AUDIT_FIELDS]
    models = key_models()
    assert list(models.policy.model_fields) == list(render_policy({}, models.fields))


def test_real_answers_match_their_declared_schemas(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    spec = Spec(httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json())
    check = spec.check
    with kb.admin() as c:
        check(c.get("/v1/credentials"))
        check(c.get("/v1/credentials/default"))
        made = check(c.post("/v1/credentials", json={"vendor": "stripe", "name": "b", "secret": REAL_SECRET}))
        assert made.status_code == 201
        check(c.post("/v1/credentials/b/rotate", json={"secret": REAL_SECRET}))
        check(c.post("/v1/credentials", json={"vendor": "stripe", "name": "b", "secret": REAL_SECRET}))  # 409
        check(c.post("/v1/credentials", json={"vendor": "stripe", "name": "c", "secret": "pk_x"}))  # 422
        policy = {"daily_usd_cap": "10.5", "max_requests_per_hour": 5, "param_rules": {"amount": {"max": 500}}}
        key = check(
            c.post("/v1/keys", json={"vendor": "stripe", "credential": "default", "label": "t:a", "policy": policy})
        ).json()
        check(c.post("/v1/keys", json={"vendor": "stripe", "credential": "default", "metadata": {"run": "r"}}))
        agent = {"Authorization": f"Bearer {key['key']}"}
        assert httpx.get(f"{kb.url}/stripe/v1/balance", headers=agent).status_code == 200
        check(c.get("/v1/keys", params={"limit": 1}))
        check(c.get(f"/v1/keys/{key['id']}"))
        check(c.patch(f"/v1/keys/{key['id']}", json={"label": "t:b", "policy": {"max_requests_per_hour": None}}))
        check(c.patch(f"/v1/keys/{key['id']}", json={"vendor": "twilio"}))  # 422
        rows = check(c.get("/v1/audit", params={"limit": 5})).json()["data"]
        check(c.get(f"/v1/audit/{rows[0]['id']}"))
        check(c.get("/v1/audit/kbr_missing"))  # 404
        check(c.get("/v1/audit", params={"nope": "1"}))  # 400
        check(c.get("/v1/spend", params={"since": "2000-01-01T00:00:00Z", "group_by": "vendor"}))
        check(c.get("/v1/spend", params={"since": "2026-01-01T00:00:00Z", "group_by": "day"}))
        budget = check(c.post("/v1/budgets", json={"name": "n", "scope": {"label_prefix": "t:"}, "daily_usd_cap": 5}))
        check(c.post("/v1/budgets", json={"name": "all", "scope": "all", "daily_request_cap": 9}))
        check(c.post("/v1/budgets", json={"name": "c", "scope": {"credential": "gone"}, "total_usd_cap": 1}))
        check(c.get("/v1/budgets"))
        check(c.get(f"/v1/budgets/{budget.json()['id']}"))
        check(c.patch(f"/v1/budgets/{budget.json()['id']}", json={"monthly_usd_cap": "0.25"}))
        check(c.delete(f"/v1/budgets/{budget.json()['id']}"))
        alert = {"type": "webhook", "url": "https://example.com/h/secret", "events": ["cap.threshold"]}
        made_alert = check(c.post("/v1/alerts", json=alert)).json()
        check(c.get("/v1/alerts"))
        check(c.get("/v1/alerts/deliveries", params={"state": "pending"}))
        check(c.delete(f"/v1/alerts/{made_alert['id']}"))
        _, held, approval = hold(kb, {"approval_above_usd": 0.5, "approval_endpoints": ["POST /v1/*"]})
        check(c.get("/v1/approvals", params={"state": "pending", "limit": 5}))
        check(c.get(f"/v1/approvals/{approval['id']}"))
        check(c.post(f"/v1/approvals/{approval['id']}/approve", json={"reason": "ok", "grant_run_usd": 5}))
        check(c.post(f"/v1/approvals/{approval['id']}/deny", json={"reason": "late"}))  # 409
        check(c.post(f"/v1/approvals/{approval['id']}/deny", json={}))  # 422
        held.done()
        check(c.get(f"/v1/audit/{approval['audit_id']}"))  # with its approval
        charge: Any = {"amount": 100, "currency": "usd", "source": "tok_visa"}  # $1: a grant covers money only
        assert client(kb, held.key).v1.charges.create(charge).amount == 100  # let go by the run's grant
        check(c.get("/v1/audit", params={"key_id": held.key["id"]}))  # the grant's approval too
        _, held, approval = hold(kb)
        check(c.post(f"/v1/approvals/{approval['id']}/deny", json={"reason": "no"}))
        held.done()
        check(c.delete(f"/v1/keys/{key['id']}", params={"reason": "done"}))
        check(c.request("DELETE", f"/v1/keys/{key['id']}", json={"reason": "again"}))
        check(c.post("/v1/keys/revoke", json={"label_prefix": "t:"}))
        check(c.delete("/v1/credentials/b", params={"revoke_keys": "true"}))
        check(c.delete("/v1/credentials/default"))  # 409: a key still uses it
        check(c.get("/v1/keys/vk_missing"))  # 404
    check(httpx.get(f"{kb.admin_url}/healthz"))
    check(httpx.get(f"{kb.admin_url}/readyz"))
    check(httpx.get(f"{kb.admin_url}/v1/keys"))  # 401
    check(httpx.get(f"{kb.admin_url}/v1/keys", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}))  # 401
    statuses = {s for _, _, s in spec.checked}
    assert {"200", "201", "400", "401", "404", "409", "422"} <= statuses
    assert len({(m, t) for m, t, _ in spec.checked}) == 29  # every JSON operation but /metrics and the export


def test_the_checker_refuses_an_answer_off_its_schema(kb: KeybrakeThread) -> None:
    spec = Spec(httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json())
    request = httpx.Request("GET", f"{kb.admin_url}/healthz")
    spec.check(httpx.Response(200, json={"status": "ok"}, request=request))
    for wrong in ({"status": "ok", "extra": 1}, {"status": "fine"}, {}):
        try:
            spec.check(httpx.Response(200, json=wrong, request=request))
        except AssertionError:
            continue
        raise AssertionError(f"{wrong} passed")


def test_every_declared_query_parameter_is_accepted(kb: KeybrakeThread) -> None:
    """The document declares no query parameter its route would refuse as unknown (400 naming it)."""
    spec = httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json()
    values = {"limit": "5", "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "format": "jsonl",
              "state": "pending", "status": "active", "group_by": "vendor", "timezone": "UTC"}  # fmt: skip
    seen = 0
    with kb.admin() as c:
        for path, ops in spec["paths"].items():
            if "{" in path or "get" not in ops:
                continue
            for param in ops["get"].get("parameters", []):
                if param["in"] != "query" or param["name"] == "cursor":
                    continue
                name = param["name"]
                extra = {} if name == "since" or path != "/v1/spend" else {"since": values["since"]}
                r = c.get(path, params={name: values.get(name, "x"), **extra})
                assert r.status_code == 200, (path, name, r.text)
                seen += 1
    assert seen >= 25


def test_security_is_declared_exactly_where_a_token_is_needed(kb: KeybrakeThread) -> None:
    """Every operation of /openapi.json, called without a token on the real server: it answers 401
    exactly when it declares the admin bearer scheme. Each call comes from a loopback address of
    its own, so the gate's failure count per address never answers 429 instead."""
    spec = httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json()
    operations = [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    open_ones = set()
    for n, (method, path, op) in enumerate(operations):
        url = kb.admin_url + re.sub(r"\{[^}]+\}", "x", path)
        with httpx.Client(transport=httpx.HTTPTransport(local_address=f"127.0.0.{n + 2}")) as c:
            status = c.request(method.upper(), url).status_code
        if status == 401:
            assert op.get("security") == [{"AdminToken": []}], (method, path)
        else:
            assert status == 200 and not op.get("security"), (method, path, status)
            open_ones.add(path)
    assert open_ones == {"/healthz", "/readyz"}
    assert spec["paths"]["/metrics"]["get"]["security"] == [{"AdminToken": []}]
    for page in ("/openapi.json", "/docs"):  # the description itself: open, and no operation of it
        assert page not in spec["paths"]
        assert httpx.get(f"{kb.admin_url}{page}").status_code == 200
