"""Every state-changing console route, found from the app itself (so a page added later is covered
without being listed here): without a session it changes nothing (401), and with a session but
without its CSRF token — no token, another session's, a forged one, or sent from another site — it
is refused 403 before its handler runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.console.test_sessions import csrf_of, signed_in
from tests.harness import KeybrakeThread

OPEN = {"/console/sign-in"}  # takes an admin token, not a session (its own refusals: test_sessions.py)


@pytest.fixture
def kba(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


def console_posts(kb: KeybrakeThread) -> list[str]:
    """Every console route taking POST (or another changing method), path parameters filled in."""
    paths = []
    assert kb.app is not None
    for route in _flat(kb.app.admin.routes):
        if not isinstance(route, APIRoute) or not route.path.startswith("/console"):
            continue
        methods = route.methods or set()
        assert methods <= {"GET", "HEAD", "POST"}, (route.path, methods)  # forms only POST
        if "POST" in methods and route.path not in OPEN:
            paths.append(re.sub(r"\{[^}]+\}", "x_1", route.path))
    return paths


def _flat(routes: list[Any]) -> Iterator[Any]:
    """The app's routes with included routers opened (the console's routers add no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def test_every_console_post_needs_a_session_and_its_csrf_token(kba: KeybrakeThread) -> None:
    posts = console_posts(kba)
    assert "/console/sign-out" in posts
    with signed_in(kba) as c, signed_in(kba) as other:
        mine, theirs = csrf_of(c), csrf_of(other)
        for path in posts:
            r = httpx.post(f"{kba.admin_url}{path}", data={"csrf_token": mine, "confirm": "yes"})
            assert r.status_code == 401, (path, r.status_code)  # no cookie: not signed in
            for data, headers in (
                ({"confirm": "yes"}, {}),
                ({"csrf_token": theirs, "confirm": "yes"}, {}),
                ({"csrf_token": "0" * 64, "confirm": "yes"}, {}),
                ({"csrf_token": mine, "confirm": "yes"}, {"Origin": "https://evil.example"}),
            ):
                r = c.post(path, data=data, headers=headers)
                assert r.status_code == 403 and "csrf" in r.text.lower(), (path, data, headers, r.status_code)
            r = c.post(path, content=f'{{"csrf_token": "{mine}"}}', headers={"Content-Type": "application/json"})
            assert r.status_code == 403, (path, "JSON body")  # only a form carries the token
        assert c.get("/console").status_code == 200  # the session lives: nothing above signed it out
