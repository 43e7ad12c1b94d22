"""Budget seeding counts exactly what settlement counts (issue 12 fix round, findings F1.3 and F1.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


def _budget(kb: KeybrakeThread, name: str, scope: Any, **caps: Any) -> dict[str, Any]:
    with kb.admin() as c:
        r = c.post("/v1/budgets", json={"name": name, "scope": scope, **caps})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def _usage(kb: KeybrakeThread, bid: str) -> dict[str, Any]:
    with kb.admin() as c:
        return c.get(f"/v1/budgets/{bid}").json()["usage"]  # type: ignore[no-any-return]


def test_a_vendor_401_counts_one_request_in_live_and_seeded_budgets_alike(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Red-team suspicion, verified: a request the vendor refused with 401 reached the vendor, so
    settlement counts it in daily_request_cap (1); a budget created after it, and one a key is
    relabelled into, used to count 0. All three now agree: 1 (and $0)."""
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url, secret="sk_test_wrongsecret99999")
        key = kb.issue({"daily_usd_cap": 10}, label="t:agent")
        before = _budget(kb, "before", {"label_prefix": "t:"}, daily_request_cap=10)
        r = httpx.get(f"{kb.url}/stripe/v1/customers", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_credential_rejected"
        after = _budget(kb, "after", {"label_prefix": "t:"}, daily_request_cap=10)
        assert _usage(kb, before["id"])["daily_requests"]["used"] == 1
        assert after["usage"]["daily_requests"]["used"] == 1
        moved = _budget(kb, "moved", {"label_prefix": "u:"}, daily_request_cap=10)
        with kb.admin() as c:
            assert c.patch(f"/v1/keys/{key['id']}", json={"label": "u:agent"}).status_code == 200
        assert _usage(kb, moved["id"])["daily_requests"]["used"] == 1
        assert _usage(kb, before["id"])["daily_requests"]["used"] == 0  # the relabel moved it out


def _charge(kb: KeybrakeThread, key: dict[str, Any], cents: int) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=f"amount={cents}&currency=usd&source=tok_visa".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {key['key']}"},
        timeout=60,
    )


def test_a_credential_budget_follows_the_credentials_current_generation(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Newcomer: a budget on {"credential": "default"} created after DELETE ?revoke_keys=true and
    re-adding `default` counted the deleted generation's spend (179 on a fresh credential). Now it
    starts at 0 and counts the new generation's keys ($5); an existing budget keeps what it counted."""
    with KeybrakeThread(tmp_path / "d") as kb:
        first = kb.add_credential(fake_stripe.base_url)
        old = kb.issue({"daily_usd_cap": 1000})
        existing = _budget(kb, "existing", {"credential": "default"}, daily_usd_cap=1000)
        assert _charge(kb, old, 17_900).status_code == 200  # $179 on the first generation
        with kb.admin() as c:
            assert c.delete("/v1/credentials/default", params={"revoke_keys": "true"}).status_code == 200
        second = kb.add_credential(fake_stripe.base_url)
        assert first["generation"] != second["generation"]
        fresh = _budget(kb, "fresh", {"credential": "default"}, daily_usd_cap=1000)
        assert fresh["usage"]["daily_usd"]["used"] == 0
        new = kb.issue({"daily_usd_cap": 1000})
        assert new["credential_generation"] == second["generation"]
        assert _charge(kb, new, 500).status_code == 200
        assert _usage(kb, fresh["id"])["daily_usd"]["used"] == 5
        assert _usage(kb, existing["id"])["daily_usd"]["used"] == 184  # kept: 179 + 5
        with kb.admin() as c:
            listed = c.get("/v1/keys", params={"credential": "default"}).json()["data"]
        gens = {k["id"]: k["credential_generation"] for k in listed}  # by name: both generations
        assert gens == {old["id"]: first["generation"], new["id"]: second["generation"]}


def test_budget_inputs_name_the_field_and_warn_like_keys(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Newcomer: a bad time zone on PATCH leaked pydantic's "Value error, "; a budget on a credential
    that does not exist was created silently; `GET /v1/spend` with until < since answered 200."""
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url)
        with kb.admin() as c:
            ok = c.post("/v1/budgets", json={"name": "b", "scope": "all", "daily_usd_cap": 5})
            assert ok.status_code == 201 and "warnings" not in ok.json()
            bad = c.patch(f"/v1/budgets/{ok.json()['id']}", json={"timezone": "Mars/Olympus"})
            assert bad.status_code == 422 and "Value error" not in bad.text, bad.text
            assert bad.json()["error"]["field"] == "timezone", bad.text
            ghost = c.post("/v1/budgets", json={"name": "g", "scope": {"credential": "nope"}, "daily_usd_cap": 5})
            assert ghost.status_code == 201
            assert ghost.json()["warnings"] == [
                "no credential named 'nope' exists: this budget covers no key until one is added"
            ]
            spend = c.get("/v1/spend", params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
            assert spend.status_code == 400 and spend.json()["error"]["field"] == "until", spend.text
