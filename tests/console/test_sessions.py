"""Signing in to the console (docs/console.md): the cookie, its end (sign-out, expiry, the token's
revocation), CSRF on every POST, the security headers, and where the console is (not) served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from keybrake.cli import main
from tests.harness import ADMIN_TOKEN, KeybrakeThread


@contextmanager
def signed_in(kb: KeybrakeThread, token: str = ADMIN_TOKEN) -> Iterator[httpx.Client]:
    """An httpx client holding a console session cookie (signed in through the form). Its timeout
    is 30 s, not httpx's 5 s: a console page on a loaded PostgreSQL pass once took longer."""
    with httpx.Client(base_url=kb.admin_url, timeout=30) as c:
        r = c.post("/console/sign-in", data={"token": token, "next": "/console"})
        assert r.status_code == 303 and r.headers["location"] == "/console", r.text
        yield c


def csrf_of(c: httpx.Client, path: str = "/console") -> str:
    page = c.get(path)
    assert page.status_code == 200, page.text
    marker = 'name="csrf_token" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


@pytest.fixture
def kba(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


def test_sign_in_sets_a_strict_httponly_cookie_and_the_pages_open(kba: KeybrakeThread) -> None:
    r = httpx.post(f"{kba.admin_url}/console/sign-in", data={"token": ADMIN_TOKEN, "next": "/console/keys"})
    assert r.status_code == 303 and r.headers["location"] == "/console/keys"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("keybrake_session=")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    assert "secure" not in flags  # plain http on loopback; behind TLS the cookie is Secure
    assert ADMIN_TOKEN not in cookie
    with signed_in(kba) as c:
        page = c.get("/console")
        assert page.status_code == 200 and "Overview" in page.text
        assert ADMIN_TOKEN not in page.text


def test_without_a_session_pages_send_to_sign_in_and_posts_are_refused(kba: KeybrakeThread) -> None:
    r = httpx.get(f"{kba.admin_url}/console?vendor=stripe")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/sign-in?next=/console%3Fvendor%3Dstripe"
    r = httpx.post(f"{kba.admin_url}/console/sign-out", data={"csrf_token": "x"})
    assert r.status_code == 401 and "not signed in" in r.text
    # a bearer token does not open the console: its pages take the cookie only
    r = httpx.get(f"{kba.admin_url}/console", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 303


def test_a_wrong_token_is_refused_and_counted(kba: KeybrakeThread) -> None:
    for i in range(10):
        r = httpx.post(f"{kba.admin_url}/console/sign-in", data={"token": f"kb_admin_wrong{i}"})
        assert r.status_code == 401 and "Unknown or revoked admin token" in r.text
        assert f"kb_admin_wrong{i}" not in r.text and "set-cookie" not in r.headers
    r = httpx.post(f"{kba.admin_url}/console/sign-in", data={"token": "kb_admin_wrong"})
    assert r.status_code == 429 and "wait a minute" in r.text
    r = httpx.post(f"{kba.admin_url}/console/sign-in", data={"token": ADMIN_TOKEN})
    assert r.status_code == 303  # a valid token still gets in


def test_sign_out_ends_the_session_on_the_server(kba: KeybrakeThread) -> None:
    with signed_in(kba) as c:
        stolen = c.cookies["keybrake_session"]
        r = c.post("/console/sign-out", data={"csrf_token": csrf_of(c)})
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?why=signed_out"
    # the cookie, replayed after sign-out, opens nothing
    r = httpx.get(f"{kba.admin_url}/console", cookies={"keybrake_session": stolen})
    assert r.status_code == 303 and "why=signed_out" in r.headers["location"]


def _cli(kb: KeybrakeThread, *args: str) -> str:
    env = {"KEYBRAKE_DATABASE_URL": kb.settings.database_url or "", "KEYBRAKE_ADMIN_TOKEN": ""}
    out = CliRunner().invoke(main, [*args, "--data-dir", str(kb.settings.data_dir)], env=env)
    assert out.exit_code == 0, out.output
    return out.output


def test_a_session_ends_with_its_admin_token(kba: KeybrakeThread) -> None:
    made = json.loads((out := _cli(kba, "admin-tokens", "create", "--label", "night-shift"))[out.index("{") :])
    with signed_in(kba, made["token"]) as c:
        page = c.get("/console")
        assert page.status_code == 200 and "night-shift" in page.text  # who is signed in
        _cli(kba, "admin-tokens", "revoke", made["id"])
        r = c.get("/console")
        assert r.status_code == 303 and "why=token_revoked" in r.headers["location"]


def test_a_session_expires(tmp_path: Path) -> None:
    now = [int(time.time() * 1000)]
    with KeybrakeThread(tmp_path / "d", admin_port=0, clock=lambda: now[0], console_session_s=60) as kb:
        with signed_in(kb) as c:
            assert c.get("/console").status_code == 200
            now[0] += 59_000
            assert c.get("/console").status_code == 200
            now[0] += 1_000
            r = c.get("/console")
            assert r.status_code == 303 and "why=expired" in r.headers["location"]


def test_every_post_needs_the_csrf_token_of_its_own_session(kba: KeybrakeThread) -> None:
    with signed_in(kba) as c, signed_in(kba) as other:
        mine = csrf_of(c)
        for data in (
            {},
            {"csrf_token": ""},
            {"csrf_token": csrf_of(other)},
            {"csrf_token": mine[:-1] + ("1" if mine.endswith("0") else "0")},
        ):
            r = c.post("/console/sign-out", data=data)
            assert r.status_code == 403 and "CSRF" in r.text, data
        # the right token from another site is refused too (Origin names another host)
        r = c.post("/console/sign-out", data={"csrf_token": mine}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert c.get("/console").status_code == 200  # nothing was ended
        # a login CSRF (signing a browser in from another site) is refused
        r = httpx.post(f"{kba.admin_url}/console/sign-in", data={"token": ADMIN_TOKEN},
                       headers={"Origin": "https://evil.example"})  # fmt: skip
        assert r.status_code == 403 and "set-cookie" not in r.headers


def test_console_answers_carry_a_strict_csp(kba: KeybrakeThread) -> None:
    with signed_in(kba) as c:
        for path in ("/console", "/console/sign-in", "/console/static/console.css", "/console/nope"):
            r = c.get(path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert c.get("/console").headers["cache-control"] == "no-store"
        assert c.get("/console/static/../../admin/gate.py").status_code == 404
        assert c.get("/console/static/vendor/htmx.min.js").status_code == 200


def test_the_console_is_never_on_the_proxy_port(kba: KeybrakeThread, tmp_path: Path) -> None:
    for path in ("/console", "/console/sign-in", "/console/static/console.css"):
        r = httpx.get(f"{kba.url}{path}")
        assert r.status_code == 404 and "admin listener" in r.json()["error"]["message"], path
    with KeybrakeThread(tmp_path / "one") as single:  # one listener: the console is not served at all
        r = httpx.get(f"{single.url}/console/sign-in")
        assert r.status_code == 404 and "--admin-port" in r.json()["error"]["message"]


def test_the_session_cookie_does_not_open_the_json_api(kba: KeybrakeThread) -> None:
    with signed_in(kba) as c:
        cookie = c.cookies["keybrake_session"]
    r = httpx.get(f"{kba.admin_url}/v1/keys", headers={"Cookie": f"keybrake_session={cookie}"})
    if True:
        assert r.status_code == 401 and r.json()["error"]["code"] == "admin_token_invalid"


def test_a_self_refreshing_part_sends_the_page_to_sign_in_without_data(kba: KeybrakeThread) -> None:
    """htmx refreshes (a live tail) after the session ended: no data, the whole page goes to sign-in."""
    headers = {"HX-Request": "true", "HX-Current-URL": f"{kba.admin_url}/console?vendor=stripe"}
    r = httpx.get(f"{kba.admin_url}/console", headers=headers)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["hx-redirect"] == "/console/sign-in?next=/console%3Fvendor%3Dstripe"
    r = httpx.get(f"{kba.admin_url}/console", headers={**headers, "HX-Current-URL": "https://evil.example/x"})
    assert r.headers["hx-redirect"] == "/console/sign-in?next=/console"  # never back to another site


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"admin_port": 18081}, "open http://127.0.0.1:18081/console"),
        ({"admin_port": 9000, "admin_host": "::1"}, "open http://[::1]:9000/console"),
        ({"admin_socket": Path("/run/kb.sock")}, "admin socket"),
        ({}, "start Keybrake with --admin-port 8081"),
    ],
)
def test_the_proxy_port_says_where_the_console_is(settings: dict[str, object], says: str) -> None:
    from keybrake.app.asgi import console_elsewhere
    from keybrake.config import Settings

    assert says in console_elsewhere(Settings(data_dir=Path("/nonexistent"), **settings))  # type: ignore[arg-type]


def test_the_cookie_is_secure_behind_an_https_public_url(tmp_path: Path) -> None:
    """Behind a TLS proxy whose forwarded headers are not trusted, the request looks like plain
    HTTP: an https KEYBRAKE_PUBLIC_URL still makes the cookie Secure."""
    with KeybrakeThread(tmp_path / "d", admin_port=0, public_url="https://keybrake.example.com") as kb:
        r = httpx.post(f"{kb.admin_url}/console/sign-in", data={"token": ADMIN_TOKEN})
        assert r.status_code == 303
        assert "secure" in {f.strip().lower() for f in r.headers["set-cookie"].split(";")}
