"""Keys pages (docs/console.md, keys): the fleet with its caps, one key's and the bulk revocation
behind their confirmations, the key page's merge patch and live tail, and the refusals."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from keybrake.store import open_store
from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import KeybrakeThread
from tests.stripe_sdk import client


def _revoke(c: httpx.Client, key_id: str, **fields: str) -> httpx.Response:
    return c.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": csrf_of(c, "/console/keys"), **fields})


def test_the_fleet_shows_caps_last_call_and_filters(ckb: KeybrakeThread) -> None:
    used = ckb.issue({"daily_usd_cap": 5, "max_requests_per_hour": 10}, label="fleet:used")
    idle = ckb.issue({"total_usd_cap": "2.50"}, label="fleet:idle")
    other = ckb.issue({}, label="elsewhere:x")
    client(ckb, used).v1.customers.create({"email": "a@example.com"})
    with signed_in(ckb) as c:
        r = c.get("/console/keys", params={"label_prefix": "fleet:"})
        assert r.status_code == 200
        assert used["id"] in r.text and idle["id"] in r.text and other["id"] not in r.text
        row = r.text[r.text.index(f'href="/console/keys/{used["id"]}"') :]
        row = row[: row.index("</tr>")]
        assert re.search(r'<meter min="0" max="10" value="1"', row), row  # one request of 10 this hour
        assert "1 / 10" in row and "/ $5.00" in row
        assert "UTC" in row.split('<td data-label="Last call">')[-1]  # the last call's time (never for the idle key)
        idle_row = r.text[r.text.index(f'href="/console/keys/{idle["id"]}"') :]
        assert "never" in idle_row[: idle_row.index("</tr>")] and "$0.00 / $2.50" in idle_row
        assert c.get("/console/keys", params={"vendor": "twilio"}).text.count("/console/keys/vk_") == 0
        revoked = c.get("/console/keys", params={"status": "revoked"})
        assert used["id"] not in revoked.text
        assert c.get("/console/keys", params={"status": "nope"}).status_code == 400


def test_the_fleet_pages_with_a_cursor(ckb: KeybrakeThread) -> None:
    ids = [ckb.issue({}, label=f"page:{i:02d}")["id"] for i in range(52)]
    with signed_in(ckb) as c:
        first = c.get("/console/keys", params={"label_prefix": "page:"}).text
        assert first.count('<a href="/console/keys/vk_') == 50
        nxt = re.search(r'href="(/console/keys\?[^"]*cursor=[^"]+)"', first)
        assert nxt is not None
        second = c.get(nxt.group(1).replace("&amp;", "&")).text
        shown = set(re.findall(r'<a href="/console/keys/(vk_\w+)"', first + second))
        assert shown == set(ids)


def test_revoke_confirms_first_then_the_key_is_refused(ckb: KeybrakeThread) -> None:
    key = ckb.issue({}, label="one:key")
    sc = client(ckb, key)
    sc.v1.customers.create({"email": "a@example.com"})
    with signed_in(ckb) as c:
        confirm = c.get(f"/console/keys/{key['id']}/revoke")
        assert confirm.status_code == 200 and "refused 401" in confirm.text and "one:key" in confirm.text
        r = _revoke(c, key["id"])  # no confirm=yes: the confirmation again, nothing revoked
        assert r.status_code == 200 and 'name="confirm" value="yes"' in r.text
        assert ckb.key(key["id"])["status"] == "active"
        r = _revoke(c, key["id"], confirm="yes", reason="x" * 501)
        assert r.status_code == 422 and "reason" in r.text and ckb.key(key["id"])["status"] == "active"
        r = _revoke(c, key["id"], confirm="yes", reason="leaked in a log")
        assert r.status_code == 303 and r.headers["location"].startswith("/console/keys?notice=")
        assert "revoked" in c.get(r.headers["location"]).text
    after = ckb.key(key["id"])
    assert after["status"] == "revoked" and after["revoke_reason"] == "leaked in a log"
    try:
        sc.v1.customers.create({"email": "b@example.com"})
        raise AssertionError("a revoked key was let through")
    except stripe.AuthenticationError as exc:
        assert exc.http_status == 401


def test_a_revoke_without_csrf_is_refused_and_the_key_stays(ckb: KeybrakeThread) -> None:
    key = ckb.issue({}, label="csrf:key")
    with signed_in(ckb) as c:
        r = c.post(f"/console/keys/{key['id']}/revoke", data={"confirm": "yes"})
        assert r.status_code == 403
        r = c.post(f"/console/keys/{key['id']}/revoke", data={"confirm": "yes", "csrf_token": "forged"})
        assert r.status_code == 403
        r = c.post("/console/keys/bulk-revoke", data={"confirm": "yes", "label_prefix": "csrf:"})
        assert r.status_code == 403
    r = httpx.post(f"{ckb.admin_url}/console/keys/{key['id']}/revoke", data={"confirm": "yes", "csrf_token": "x"})
    assert r.status_code == 401  # no session at all
    assert ckb.key(key["id"])["status"] == "active"


def test_bulk_revoke_counts_first_and_refuses_an_empty_filter(ckb: KeybrakeThread) -> None:
    a, b = ckb.issue({}, label="nightly:a"), ckb.issue({}, label="nightly:b")
    other = ckb.issue({}, label="other:c")
    with signed_in(ckb) as c:
        csrf = csrf_of(c, "/console/keys")
        for empty in ({}, {"label_prefix": "", "vendor": ""}, {"label_prefix": "   "}):
            r = c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "confirm": "yes", **empty})
            assert r.status_code == 422 and "empty filter would revoke every key" in r.text
        r = c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "vendor": "nope"})
        assert r.status_code == 422 and "unknown vendor" in r.text
        r = c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "label_prefix": "nightly:"})
        assert r.status_code == 200 and "This will revoke 2 active keys" in r.text
        assert a["id"] in r.text and b["id"] in r.text and other["id"] not in r.text
        assert all(ckb.key(k["id"])["status"] == "active" for k in (a, b, other))
        ckb.issue({}, label="nightly:late")  # issued between the confirmation and the revocation
        data = {"csrf_token": csrf, "label_prefix": "nightly:", "confirm": "yes", "expected": "2", "reason": "r"}
        r = c.post("/console/keys/bulk-revoke", data=data)
        assert r.status_code == 303
        notice = c.get(r.headers["location"]).text
        assert "Revoked 3 keys" in notice and "The confirmation showed 2" in notice
    assert [ckb.key(k["id"])["status"] for k in (a, b, other)] == ["revoked", "revoked", "active"]


def test_key_detail_patch_keeps_the_text_on_a_refusal(ckb: KeybrakeThread) -> None:
    key = ckb.issue({"daily_usd_cap": 5}, label="detail:key", metadata={"team": "<b>ops</b>"})
    path = f"/console/keys/{key['id']}"
    with signed_in(ckb) as c:
        r = c.get(path)
        assert r.status_code == 200 and "daily_usd_cap" in r.text and "$5.00" in r.text
        assert "&lt;b&gt;ops&lt;/b&gt;" in r.text and "<b>ops</b>" not in r.text
        assert "customer_allowlist" in r.text and "allowed_to_prefixes" not in r.text  # Stripe's fields only
        assert f'hx-get="{path}/tail"' in r.text and f"/console/audit?key_id={key['id']}" in r.text
        csrf = csrf_of(c, path)
        bad = '{"policy": {"daily_usd_cap": "lots"}}'
        r = c.post(f"{path}/patch", data={"csrf_token": csrf, "patch": bad})
        with ckb.admin() as api:  # the API's own answer to the same patch: the page shows its words
            err = api.patch(f"/v1/keys/{key['id']}", content=bad).json()["error"]
        assert r.status_code == 422 and err["field"] == "policy.daily_usd_cap"
        assert f"policy.daily_usd_cap: {html.escape(err['message'])}" in r.text
        assert "{&#34;policy&#34;: {&#34;daily_usd_cap&#34;: &#34;lots&#34;}}" in r.text  # the text kept
        r = c.post(f"{path}/patch", data={"csrf_token": csrf, "patch": "{not json"})
        assert r.status_code == 400 and "not valid JSON" in r.text and "{not json" in r.text
        r = c.post(f"{path}/patch", data={"csrf_token": csrf, "patch": '{"policy": {"daily_usd_cap": 7}}'})
        assert r.status_code == 303 and "Key changed" in c.get(r.headers["location"]).text
    assert ckb.key(key["id"])["policy"]["daily_usd_cap"] == 7


def test_the_tail_is_a_fragment_and_needs_a_session(ckb: KeybrakeThread) -> None:
    key = ckb.issue({}, label="tail:key")
    client(ckb, key).v1.customers.create({"email": "a@example.com"})
    tail = f"{ckb.admin_url}/console/keys/{key['id']}/tail"
    r = httpx.get(tail)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in?next=")
    assert "customers" not in r.text
    page = f"{ckb.admin_url}/console/keys/{key['id']}"
    r = httpx.get(tail, headers={"HX-Request": "true", "HX-Current-URL": page})  # the refresh of a page
    assert r.headers["hx-redirect"] == f"/console/sign-in?next=/console/keys/{key['id']}" and r.text == ""
    with signed_in(ckb) as c:
        r = c.get(f"/console/keys/{key['id']}/tail")
        assert r.status_code == 200 and r.text.startswith('<div id="live"') and '<section id="tail"' in r.text
        assert "/v1/customers" in r.text and "allowed" in r.text and "<html" not in r.text
        assert c.get("/console/keys/vk_nope/tail").status_code == 404
        assert c.get("/console/keys/vk_nope").status_code == 404


@pytest.mark.sqlite_only
def test_last_call_and_tail_reads_seek_the_key_index(tmp_path: Path) -> None:
    """The fleet's last call per key and the key page's tail read ix_audit_key (key_id, id), newest
    first, without a sort or a scan: bounded at any number of audit rows."""
    store = open_store(None, tmp_path, migrate=False)

    def plan(sql: str, args: list[Any]) -> str:
        def go() -> list[Any]:
            with store._tx() as cur:  # type: ignore[attr-defined]
                return list(cur.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall())

        return "\n".join(str(tuple(r)) for r in asyncio.run(store._run(go)))  # type: ignore[attr-defined]

    try:
        for sql in (
            "SELECT ts FROM audit WHERE key_id = ? ORDER BY id DESC LIMIT 1",  # last_calls
            "SELECT * FROM audit WHERE key_id = ? ORDER BY id DESC LIMIT ?",  # query_audit(key_id, limit)
        ):
            args = ["vk_1"] + ([20] if sql.endswith("?") else [])
            found = plan(sql, args)
            assert "ix_audit_key" in found and "TEMP B-TREE" not in found, found
    finally:
        asyncio.run(store.close())


def test_a_hostile_label_is_text_on_every_keys_page(ckb: KeybrakeThread) -> None:
    label = '"><script>alert(1)</script><b x="'
    key = ckb.issue({"daily_usd_cap": 1}, label=label)
    with signed_in(ckb) as c:
        csrf = csrf_of(c, "/console/keys")
        answers = [
            c.get("/console/keys"),
            c.get(f"/console/keys/{key['id']}"),
            c.get(f"/console/keys/{key['id']}/revoke"),
            c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "label_prefix": label[:5]}),
        ]
    for r in answers:
        assert r.status_code == 200, r.url
        assert label not in r.text and "<script>alert" not in r.text, r.url
        assert html.escape(label, quote=False).replace('"', "&#34;") in r.text, r.url
