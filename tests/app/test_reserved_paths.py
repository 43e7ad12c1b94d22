"""Paths under a reserved first segment (vendors.RESERVED_NAMES) that are no admin route — `/docs/`,
`/metrics/x`, … — answer the admin API's own 404 and are never taken for agent calls (no audit row)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import KeybrakeThread, wait_for

NOT_ADMIN_ROUTES = ("/docs/", "/docs/x", "/metrics/", "/healthz/x", "/readyz/", "/openapi.json/", "/docs/assets")
ADMIN_404 = {
    "error": {"type": "keybrake_error", "code": "not_found", "message": "no such admin endpoint", "field": None}
}


@pytest.fixture
def kb_admin(tmp_path: Path) -> Iterator[KeybrakeThread]:
    """A Keybrake with its admin API on a listener of its own."""
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


def _no_agent_call_audited(kb: KeybrakeThread, url: str) -> None:
    """Then one agent call without a key (`/v1/balance`: unprefixed vendor paths stay agent calls):
    once its row is written, it is the only one."""
    r = httpx.get(f"{url}/v1/balance")
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_missing"
    rows = wait_for(lambda: kb.audit())
    assert [row["path"] for row in rows] == ["/v1/balance"]


def test_reserved_paths_answer_the_admin_404_on_the_single_listener(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        unknown = c.get("/v1/keys/x/y")  # the admin app's own 404, for comparison
    assert unknown.status_code == 404 and unknown.json() == ADMIN_404
    for path in NOT_ADMIN_ROUTES:
        for method in ("GET", "POST"):
            r = httpx.request(method, f"{kb.url}{path}")
            assert (r.status_code, r.json()) == (404, ADMIN_404), (method, path)
            assert r.headers["content-type"] == unknown.headers["content-type"]
    assert httpx.get(f"{kb.url}/docs").status_code == 200  # the admin routes themselves are unchanged
    assert httpx.get(f"{kb.url}/healthz").json() == {"status": "ok"}
    _no_agent_call_audited(kb, kb.url)


def test_reserved_paths_are_no_agent_calls_on_the_proxy_listener(kb_admin: KeybrakeThread) -> None:
    for path in NOT_ADMIN_ROUTES:
        r = httpx.get(f"{kb_admin.url}{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
    _no_agent_call_audited(kb_admin, kb_admin.url)
