"""Red-team findings on the admin API: PATCH /v1/keys/{id} answers the warnings issuance gives,
bulk revoke refuses a vendor or credential that does not exist (a typo would revoke nothing and
answer 0), and no answer redirects to the host a client's Host header names."""

from __future__ import annotations

import httpx
import pytest

from keybrake.admin.key_models import key_models
from tests.admin.spec import Spec
from tests.harness import ADMIN_TOKEN, KeybrakeThread

NO_CAP = "no USD cap is set: this key can move money without limit until it expires"
NO_ENDPOINTS = "no allowed_endpoints: every endpoint of the vendor is allowed"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_patch_answers_the_warnings_issue_answers(kb: KeybrakeThread) -> None:
    spec = Spec(httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json())
    key = kb.issue({"daily_usd_cap": 5, "allowed_endpoints": ["GET /v1/balance"]})
    assert key["warnings"] == []
    with kb.admin() as c:
        bare = spec.check(c.patch(f"/v1/keys/{key['id']}", json={"policy": {"daily_usd_cap": None}}))
        assert bare.status_code == 200 and bare.json()["warnings"] == [NO_CAP]
        wide = spec.check(c.patch(f"/v1/keys/{key['id']}", json={"policy": {"allowed_endpoints": None}}))
        assert wide.json()["warnings"] == [NO_CAP, NO_ENDPOINTS]
        assert wide.json()["policy"]["daily_usd_cap"] is None and wide.json()["policy"]["allowed_endpoints"] is None
        label = spec.check(c.patch(f"/v1/keys/{key['id']}", json={"label": "t:x"}))  # still uncapped: said again
        assert label.json()["warnings"] == [NO_CAP, NO_ENDPOINTS]
        capped = c.patch(
            f"/v1/keys/{key['id']}", json={"policy": {"total_usd_cap": "1.5", "allowed_endpoints": ["GET /v1/balance"]}}
        )
        assert capped.json()["warnings"] == []
        assert "warnings" not in c.get(f"/v1/keys/{key['id']}").json()  # a read has none, as before


def test_patch_declares_its_warnings_in_the_openapi_document(kb: KeybrakeThread) -> None:
    doc = httpx.get(f"{kb.admin_url}/openapi.json", timeout=60).json()
    answer = doc["paths"]["/v1/keys/{key_id}"]["patch"]["responses"]["200"]["content"]["application/json"]["schema"]
    name = answer["$ref"].rsplit("/", 1)[1]
    schema = doc["components"]["schemas"][name]
    assert schema["properties"]["warnings"] == {"items": {"type": "string"}, "title": "Warnings", "type": "array"}
    assert "warnings" in schema["required"]
    assert list(key_models().updated_key.model_fields) == [*key_models().key.model_fields, "warnings"]


@pytest.mark.parametrize("vendor", ["strpe", "STRIPE", ""])
def test_bulk_revoke_refuses_an_unknown_vendor_naming_the_known_ones(kb: KeybrakeThread, vendor: str) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    with kb.admin() as c:
        for body in ({"vendor": vendor}, {"vendor": vendor, "all": True}, {"vendor": vendor, "label_prefix": "t"}):
            r = c.post("/v1/keys/revoke", json=body)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["code"] == "validation_error" and error["field"] == "vendor"
            assert error["message"].startswith(f"unknown vendor {vendor!r}; known: ") and "stripe" in error["message"]
    assert kb.key(key["id"])["status"] == "active"


def test_bulk_revoke_refuses_a_credential_that_does_not_exist(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    with kb.admin() as c:
        r = c.post("/v1/keys/revoke", json={"credential": "defualt"})
        assert r.status_code == 422 and r.json()["error"] == {
            "type": "keybrake_error",
            "code": "validation_error",
            "message": "no credential named 'defualt'",
            "field": "credential",
        }
        assert kb.key(key["id"])["status"] == "active"
        none = c.post("/v1/keys/revoke", json={"label_prefix": "nobody:"})  # a prefix matching no key: a valid 0
        assert none.status_code == 200 and none.json()["revoked"] == 0
        done = c.post("/v1/keys/revoke", json={"vendor": "stripe", "credential": "default"})
        assert done.status_code == 200 and done.json()["revoked"] == 1


SLASHED = (
    "/docs/assets/favicon.png/",
    "/docs/",
    "/openapi.json/",
    "/healthz/",
    "/readyz/",
    "/metrics/",
    "/v1/keys/",
    "/v1/credentials/",
    "/v1/audit/",
)


@pytest.mark.parametrize("path", SLASHED)
def test_a_trailing_slash_is_never_redirected_to_the_host_header(kb: KeybrakeThread, path: str) -> None:
    for base in (kb.admin_url, kb.url):
        for headers in ({"Host": "evil.example"}, {"Host": "evil.example", **AUTH}):
            r = httpx.get(f"{base}{path}", headers=headers)
            assert "location" not in r.headers, (base, path, r.status_code, r.headers.get("location"))
            assert not 300 <= r.status_code < 400, (base, path, r.status_code)
    with kb.admin() as c:
        r = c.get(path, headers={"Host": "evil.example"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
