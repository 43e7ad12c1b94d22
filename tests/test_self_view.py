"""`GET /_keybrake/self` refuses exactly the keys the proxy refuses: it runs the pipeline's own
key-state check (`proxy.keys.key_state`), with its own messages (docs/api.md, §3.5)."""

from __future__ import annotations

import time

import httpx

from keybrake.tokens import VAULT_PREFIX, new_token
from tests.harness import KeybrakeThread


def _me(kb: KeybrakeThread, token: str) -> httpx.Response:
    return httpx.get(f"{kb.url}/_keybrake/self", headers={"Authorization": f"Bearer {token}"})


def test_self_view_answers_a_live_key_and_refuses_revoked_expired_and_unknown_ones(kb: KeybrakeThread) -> None:
    live = kb.issue({"daily_usd_cap": 10}, expires_in=600)
    revoked = kb.issue({"daily_usd_cap": 10}, expires_in=600)
    expired = kb.issue({"daily_usd_cap": 10}, expires_in=1)
    with kb.admin() as admin:
        r = admin.request("DELETE", f"/v1/keys/{revoked['id']}", json={"reason": "test"})
    assert r.status_code == 200, r.text
    time.sleep(1.2)  # past `expired`'s expiry by every clock

    me = _me(kb, live["key"])
    assert me.status_code == 200, me.text
    assert me.json()["id"] == live["id"] and me.headers["cache-control"] == "no-store"
    assert "metadata" not in me.json() and "credential" not in me.json()
    for token, status, code, message in (
        (revoked["key"], 401, "key_revoked", f"Vault key {revoked['id']} was revoked (test). Do not retry."),
        (
            expired["key"],
            401,
            "key_expired",
            f"Vault key {expired['id']} expired at {expired['expires_at']}. Do not retry; ask for a new key.",
        ),
        (new_token(VAULT_PREFIX), 401, "key_invalid", "Unknown vault key."),
    ):
        r = _me(kb, token)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert r.json()["error"]["message"] == message
