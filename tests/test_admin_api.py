"""Admin API: authentication, validation (422 naming the field), key lifecycle, credentials."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.harness import ADMIN_TOKEN, REAL_SECRET, KeybrakeThread


def test_admin_requires_a_valid_token(kb: KeybrakeThread) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}):
        r = httpx.get(f"{kb.url}/v1/keys", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "admin_token_invalid"
    key = kb.issue({"daily_usd_cap": 5})
    r = httpx.get(f"{kb.url}/v1/keys", headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "admin_token_required"


def test_failed_admin_auth_is_rate_limited(kb: KeybrakeThread) -> None:
    codes = [httpx.get(f"{kb.url}/v1/keys", headers={"Authorization": "Bearer nope"}).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert any("admin authentication" in line for line in kb.logs.lines)


def test_health_and_openapi(kb: KeybrakeThread) -> None:
    assert httpx.get(f"{kb.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{kb.url}/readyz").json() == {"status": "ready"}
    spec = httpx.get(f"{kb.url}/openapi.json", timeout=30).json()
    assert "/v1/keys" in spec["paths"] and "/v1/credentials/{name}/rotate" in spec["paths"]
    assert httpx.get(f"{kb.url}/metrics").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"vendor": "stripe", "policy": {"daily_usd_cap": 10, "dialy_usd_cap": 5}}, "policy.dialy_usd_cap"),
        ({"vendor": "stripe", "policy": {"daily_usd_cap": "10.1234567"}}, "policy.daily_usd_cap"),
        ({"vendor": "stripe", "policy": {"daily_usd_cap": -1}}, "policy.daily_usd_cap"),
        ({"vendor": "stripe", "policy": {"allowed_endpoints": ["POST v1/charges"]}}, "policy.allowed_endpoints"),
        ({"vendor": "stripe", "policy": {"param_rules": {"amount": {"max": "x"}}}}, "policy.param_rules.amount.max"),
        ({"vendor": "stripe", "policy": {"param_rules": {"d": {"pattern": "(a"}}}}, "policy.param_rules.d.pattern"),
        ({"vendor": "stripe", "policy": {"allowed_to_prefixes": ["+1"]}}, "policy.allowed_to_prefixes"),
        ({"vendor": "stripe", "expires_in": "8 hours"}, "expires_in"),
        ({"vendor": "stripe", "expires_in": "31d"}, "expires_in"),
        ({"vendor": "stripe", "expires_in": "1h", "expires_at": "2030-01-01T00:00:00Z"}, "expires_in"),
        ({"vendor": "stripe", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"vendor": "stripe", "metadata": {"k": 1}}, "metadata.k"),
        ({"vendor": "stripe", "label": "x" * 201}, "label"),
        ({"vendor": "nope"}, "vendor"),
        ({"vendor": "stripe", "credential": "missing"}, "credential"),
        ({"vendor": "stripe", "agent_run_label": "x"}, None),
    ],
)
def test_bad_key_requests_get_422_naming_the_field(kb: KeybrakeThread, body: dict[str, Any], field: str | None) -> None:
    with kb.admin() as c:
        r = c.post("/v1/keys", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["type"] == "keybrake_error"
    if field:
        assert err["field"] == field
    else:
        assert "label" in err["message"]


def test_malformed_json_is_400(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        r = c.post("/v1/keys", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        r = c.get("/v1/keys", params={"label_contains": "x"})
        assert r.status_code == 400 and "label_prefix" in r.json()["error"]["message"]


def test_key_lifecycle(kb: KeybrakeThread) -> None:
    key = kb.issue(
        {"daily_usd_cap": "100.50", "allowed_endpoints": ["POST /v1/charges"]},
        metadata={"agent_run_id": "run-1"},
        expires_in="8h",
    )
    assert key["key"].startswith("vault_key_") and key["key"] == key["vault_key"]
    assert key["id"].startswith("vk_") and key["policy"]["daily_usd_cap"] == 100.5
    assert key["policy"]["customer_allowlist"] is None
    assert key["usage"]["daily_usd"]["limit"] == 100.5
    assert key["warnings"] == []
    with kb.admin() as c:
        got = c.get(f"/v1/keys/{key['id']}").json()
        assert "key" not in got and key["key"] not in c.get("/v1/keys").text
        patched = c.patch(
            f"/v1/keys/{key['id']}",
            json={"policy": {"daily_usd_cap": 20, "max_requests_per_hour": 5}, "label": "test:new"},
        ).json()
        assert patched["policy"]["daily_usd_cap"] == 20 and patched["label"] == "test:new"
        assert patched["policy"]["allowed_endpoints"] == ["POST /v1/charges"]
        removed = c.patch(f"/v1/keys/{key['id']}", json={"policy": {"allowed_endpoints": None}}).json()
        assert removed["policy"]["allowed_endpoints"] is None
        assert c.patch(f"/v1/keys/{key['id']}", json={"vendor": "twilio"}).status_code == 422
        r = c.delete(f"/v1/keys/{key['id']}", params={"reason": "run finished"})
        assert r.status_code == 200 and r.json()["status"] == "revoked" and r.json()["revoke_reason"] == "run finished"
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
        assert c.patch(f"/v1/keys/{key['id']}", json={"label": "x"}).status_code == 409
        assert c.get("/v1/keys", params={"status": "revoked"}).json()["data"][0]["id"] == key["id"]
        assert c.get("/v1/keys/vk_missing").status_code == 404


def test_bulk_revoke_and_listing(kb: KeybrakeThread) -> None:
    ids = [kb.issue(label=f"tenant-a:agent:{i}")["id"] for i in range(3)]
    other = kb.issue(label="tenant-b:agent:0")["id"]
    with kb.admin() as c:
        assert c.post("/v1/keys/revoke", json={"reason": "x"}).status_code == 422
        page1 = c.get("/v1/keys", params={"limit": 2, "label_prefix": "tenant-a:"}).json()
        page2 = c.get(
            "/v1/keys", params={"limit": 2, "label_prefix": "tenant-a:", "cursor": page1["next_cursor"]}
        ).json()
        assert {k["id"] for k in page1["data"] + page2["data"]} == set(ids) and page2["next_cursor"] is None
        r = c.post("/v1/keys/revoke", json={"label_prefix": "tenant-a:", "reason": "incident"}).json()
        assert r["revoked"] == 3
        assert c.get(f"/v1/keys/{other}").json()["status"] == "active"


def test_credentials_are_never_echoed(kb: KeybrakeThread, fake_stripe: object) -> None:
    with kb.admin() as c:
        r = c.post("/v1/credentials", json={"vendor": "stripe", "name": "second", "secret": "sk_live_abcdefgh9876"})
        assert r.status_code == 201 and r.json()["secret_hint"] == "sk_live_…9876" and r.json()["livemode"] is True
        assert (
            c.post(
                "/v1/credentials", json={"vendor": "stripe", "name": "second", "secret": "sk_live_abcdefgh9876"}
            ).status_code
            == 409
        )
        assert (
            c.post("/v1/credentials", json={"vendor": "stripe", "name": "bad", "secret": "pk_live_x"}).status_code
            == 422
        )
        r = c.post(
            "/v1/credentials",
            json={"vendor": "stripe", "name": "evil", "secret": REAL_SECRET, "base_url": "http://10.0.0.1"},
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "base_url"
        r = c.post(
            "/v1/credentials",
            json={"vendor": "stripe", "name": "evil", "secret": REAL_SECRET, "base_url": "https://evil.example.com"},
        )
        assert r.status_code == 422
        listing = c.get("/v1/credentials").text
        rotated = c.post("/v1/credentials/second/rotate", json={"secret": "sk_live_zzzzzzzz5555"})
        assert rotated.status_code == 200 and rotated.json()["rotated_at"] is not None
        assert c.delete("/v1/credentials/second").status_code == 200
        assert c.get("/v1/credentials/second").status_code == 404
    for text in (listing, rotated.text, kb.logs.text()):
        assert "abcdefgh9876" not in text and REAL_SECRET not in text and "zzzzzzzz5555" not in text


def test_deleting_a_credential_in_use_needs_revoke_keys(kb: KeybrakeThread) -> None:
    key = kb.issue()
    with kb.admin() as c:
        assert c.delete("/v1/credentials/default").status_code == 409
        assert c.delete("/v1/credentials/default", params={"revoke_keys": "true"}).status_code == 200
        assert c.get(f"/v1/keys/{key['id']}").json()["status"] == "revoked"


def test_audit_filters_by_key_metadata_in_query_and_export(kb: KeybrakeThread) -> None:
    a = kb.issue(metadata={"tenant": "a"})
    b = kb.issue(metadata={"tenant": "b"})
    for key in (a, b):
        httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
    rows = kb.audit(**{"metadata.tenant": "a"})
    assert [r["key_id"] for r in rows] == [a["id"]]
    with kb.admin() as c:
        r = c.get("/v1/audit/export", params={"format": "jsonl", "metadata.tenant": "a"})
    assert r.status_code == 200
    assert [json.loads(line)["key_id"] for line in r.text.splitlines()] == [a["id"]]


def test_rotation_keeps_the_base_url_unless_given(kb: KeybrakeThread, fake_stripe: object) -> None:
    with kb.admin() as c:
        before = c.get("/v1/credentials/default").json()["base_url"]
        after = c.post("/v1/credentials/default/rotate", json={"secret": REAL_SECRET}).json()
    assert after["base_url"] == before and before.startswith("http://127.0.0.1:")
    key = kb.issue()
    assert (
        httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 200
    )


def test_key_issuance_honours_idempotency_key(kb: KeybrakeThread) -> None:
    body = {"vendor": "stripe", "label": "orch:run-9", "policy": {"daily_usd_cap": 10}}
    with kb.admin() as c:
        first = c.post("/v1/keys", json=body, headers={"Idempotency-Key": "issue-run-9"})
        again = c.post("/v1/keys", json=body, headers={"Idempotency-Key": "issue-run-9"})
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"] and again.json()["key"] == first.json()["key"]
        assert again.json()["policy"]["daily_usd_cap"] == 10
        other = c.post("/v1/keys", json={**body, "label": "orch:run-10"}, headers={"Idempotency-Key": "issue-run-9"})
        assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
        fresh = c.post("/v1/keys", json=body, headers={"Idempotency-Key": "issue-run-9b"})
        assert fresh.json()["id"] != first.json()["id"]
        assert len(c.get("/v1/keys", params={"label": "orch:run-9"}).json()["data"]) == 2
    stored = kb.query("SELECT answer_enc FROM issuances")
    assert stored and all(first.json()["key"].encode() not in bytes(r[0]) for r in stored)  # sealed at rest
