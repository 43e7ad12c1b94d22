"""`Keybrake` over a real admin API: every resource, filters, pages, errors, timeouts and which
calls are retried (a loopback server that answers 503 counts what it was sent)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from keybrake_client import Keybrake, KeybrakeAPIError, KeybrakeConnectionError
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread, free_port


@pytest.fixture
def admin(kb: KeybrakeThread) -> Iterator[Keybrake]:
    with Keybrake(kb.url, ADMIN_TOKEN, timeout=10) as client:
        yield client


def test_keys_issue_get_list_update_revoke(admin: Keybrake) -> None:
    issued = [
        admin.issue_key(
            "stripe",
            label=f"acme:agent:{i}",
            metadata={"team": "a" if i < 3 else "b"},
            policy={"daily_usd_cap": Decimal("2.5")},
            expires_in="1h",
        )
        for i in range(5)
    ]
    assert issued[0].warnings and issued[0].policy["daily_usd_cap"] == Decimal("2.5")
    assert admin.get_key(issued[0].id).label == "acme:agent:0"
    team_a = list(admin.iter_keys(metadata={"team": "a"}, page_size=2))  # two pages and one
    assert {k.id for k in team_a} == {k.id for k in issued[:3]}
    page = admin.list_keys(label_prefix="acme:", limit=2)
    assert len(page.data) == 2 and page.next_cursor is not None
    assert [k.id for k in admin.list_keys(label="acme:agent:4").data] == [issued[4].id]

    updated = admin.update_key(issued[0].id, policy={"daily_usd_cap": 7, "allowed_endpoints": ["GET /v1/customers"]})
    assert updated.policy["daily_usd_cap"] == 7 and updated.warnings == []
    revoked = admin.revoke_key(issued[0].id, reason="done")
    assert (revoked.status, revoked.revoke_reason) == ("revoked", "done")
    assert admin.revoke_key(issued[0].id).status == "revoked"  # again: nothing changes
    with pytest.raises(KeybrakeAPIError) as info:
        admin.update_key(issued[0].id, label="x")
    assert (info.value.status, info.value.code) == (409, "conflict")

    bulk = admin.revoke_keys(label_prefix="acme:", reason="incident")
    assert bulk.revoked == 4
    assert list(admin.iter_keys(status="active")) == []
    with pytest.raises(ValueError, match="label_prefix, vendor, credential, or all=True"):
        admin.revoke_keys(reason="nothing named")


def test_credentials(admin: Keybrake, fake_stripe: FakeStripe) -> None:
    [default] = admin.list_credentials()
    assert default.name == "default" and default.vendor == "stripe" and "fake" not in default.secret_hint[8:-4]
    extra = admin.add_credential("stripe", "second", "sk_test_another_secret_123456", base_url=fake_stripe.base_url)
    assert admin.get_credential("second").generation == extra.generation
    rotated = admin.rotate_credential("second", "sk_test_rotated_secret_1234567")
    assert rotated.rotated_at is not None and rotated.secret_hint.endswith("4567") != extra.secret_hint.endswith("4567")
    key = admin.issue_key("stripe", credential="second", policy={"daily_usd_cap": 1})
    with pytest.raises(KeybrakeAPIError) as info:
        admin.delete_credential("second")
    assert info.value.code == "conflict"
    deleted = admin.delete_credential("second", revoke_keys=True)
    assert deleted.deleted and deleted.revoked_keys == 1
    assert admin.get_key(key.id).status == "revoked"


def test_audit_pages_export_and_spend(kb: KeybrakeThread, admin: Keybrake) -> None:
    key = admin.issue_key(
        "stripe", label="acme:spend:1", policy={"daily_usd_cap": 100}, metadata={"agent_run_id": "r1"}
    )
    for amount in (100, 250, 300):
        r = httpx.post(
            f"{kb.url}/stripe/v1/charges",
            data={"amount": amount, "currency": "usd"},
            headers={"Authorization": f"Bearer {key.key}"},
        )
        assert r.status_code == 200, r.text
    rows = list(admin.iter_audit(key_id=key.id, page_size=2))
    assert [r.cost_usd for r in rows] == [Decimal(3), Decimal("2.5"), Decimal(1)]  # newest first
    assert [r.id for r in admin.iter_audit(agent_run_id="r1")] == [r.id for r in rows]
    assert admin.get_audit(rows[0].id) == rows[0]
    since = datetime.now(UTC) - timedelta(hours=1)
    assert len(admin.query_audit(key_id=key.id, since=since, limit=1).data) == 1
    lines = b"".join(admin.export_audit("jsonl", key_id=key.id)).splitlines()
    assert [json.loads(line)["id"] for line in lines] == [r.id for r in reversed(rows)]
    csv = b"".join(admin.export_audit("csv", metadata={"agent_run_id": "r1"})).decode()
    assert csv.splitlines()[0].startswith("id,ts,key_id") and len(csv.splitlines()) == 4
    report = admin.spend(since, group_by="key", label_prefix="acme:")
    assert report.group_by == "key" and [(g.group, g.gross_usd, g.requests) for g in report.data] == [
        (key.id, Decimal("6.5"), 3)
    ]
    with pytest.raises(ValueError, match="unknown audit filter nope"):
        admin.query_audit(nope="x")


def test_budgets_and_alerts(admin: Keybrake) -> None:
    budget = admin.create_budget("tenant a", {"label_prefix": "acme:"}, daily_usd_cap=Decimal("10.25"))
    assert budget.daily_usd_cap == Decimal("10.25") and budget.scope == {"label_prefix": "acme:"}
    assert [b.id for b in admin.list_budgets()] == [budget.id]
    assert admin.update_budget(budget.id, monthly_usd_cap=100).monthly_usd_cap == 100
    assert admin.get_budget(budget.id).usage["daily_usd"].limit == Decimal("10.25")
    assert admin.delete_budget(budget.id).deleted
    alert = admin.create_alert("webhook", "https://hooks.example.com/kb", events=["cap.hit"], thresholds=[80])
    assert alert.secret.startswith("whsec_kb_") and alert.secret not in repr(alert)
    assert [a.id for a in admin.list_alerts()] == [alert.id]
    assert admin.list_deliveries(state="failed").data == []
    assert admin.delete_alert(alert.id).deleted


def test_errors_carry_the_api_code(kb: KeybrakeThread, admin: Keybrake) -> None:
    with pytest.raises(KeybrakeAPIError) as info:
        admin.issue_key("strpe", policy={})
    assert (info.value.status, info.value.code, info.value.field) == (422, "validation_error", "vendor")
    with pytest.raises(KeybrakeAPIError) as info:
        admin.get_budget("bud_nope")
    assert (info.value.status, info.value.code) == (404, "not_found")
    with Keybrake(kb.url, "wrong-token-0123456789-0123456789-abc") as bad, pytest.raises(KeybrakeAPIError) as info:
        bad.list_credentials()
    assert (info.value.status, info.value.code) == (401, "admin_token_invalid")
    with pytest.raises(ValueError, match="vault key"):
        Keybrake(kb.url, "vault_key_abc")


class _Busy(BaseHTTPRequestHandler):
    """Answers every request 503 enforcement_unavailable (or stalls, for timeouts); counts them."""

    seen: list[str] = []
    stall = 0.0

    def _answer(self) -> None:
        type(self).seen.append(self.command)
        if type(self).stall:
            time.sleep(type(self).stall)
        body = json.dumps(
            {
                "error": {
                    "type": "keybrake_error",
                    "code": "enforcement_unavailable",
                    "message": "store unavailable",
                    "field": None,
                }
            }
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy() -> Iterator[str]:
    _Busy.seen, _Busy.stall = [], 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_only_idempotent_calls_are_retried(busy: str) -> None:
    with Keybrake(busy, ADMIN_TOKEN, retries=2) as client:
        calls: list[tuple[Callable[[], object], str, int]] = [
            (lambda: client.get_key("vk_1"), "GET", 3),
            (lambda: client.revoke_key("vk_1"), "DELETE", 3),
            (lambda: client.issue_key("stripe", policy={}), "POST", 3),  # carries an Idempotency-Key
            (lambda: client.update_key("vk_1", label="x"), "PATCH", 1),
            (lambda: client.create_budget("b", "all", daily_usd_cap=1), "POST", 1),
            (lambda: client.delete_budget("bud_1"), "DELETE", 1),
            (lambda: client.revoke_keys(all=True), "POST", 1),
        ]
        for call, method, tries in calls:
            _Busy.seen = []
            with pytest.raises(KeybrakeAPIError) as info:
                call()
            assert (info.value.status, info.value.code) == (503, "enforcement_unavailable")
            assert _Busy.seen == [method] * tries


@pytest.mark.timing
def test_timeouts_and_unreachable(busy: str) -> None:
    _Busy.stall = 1.0
    with Keybrake(busy, ADMIN_TOKEN, timeout=0.2, retries=1) as client:
        started = time.monotonic()
        with pytest.raises(KeybrakeConnectionError, match="ReadTimeout"):
            client.list_budgets()
        assert time.monotonic() - started < 1.5 and _Busy.seen == ["GET", "GET"]
    with Keybrake(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN, retries=0) as nobody:
        with pytest.raises(KeybrakeConnectionError, match="ConnectError"):
            nobody.list_credentials()
