"""FastAPI builds its per-route state (a pydantic TypeAdapter per parameter and model) on the first
request it routes. Keybrake has it built at start, on a worker thread, before the listener opens
(`admin.api.warm_routes` in `KeybrakeApp.startup`): built by FastAPI, it ran on the loop that serves
proxied calls too and held it 0.1-0.5 s on a loaded machine (a /healthz waited 0.48 s, CI,
2026-12-02)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from keybrake.app import asgi
from tests.harness import KeybrakeThread


def test_the_first_admin_requests_build_no_route_state_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built_on: list[str] = []
    init = TypeAdapter.__init__

    def recording(self: TypeAdapter[object], *args: object, **kwargs: object) -> None:
        built_on.append(threading.current_thread().name)
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    with KeybrakeThread(tmp_path / "data") as kb:
        loop_thread = kb._thread
        assert loop_thread is not None
        monkeypatch.setattr(TypeAdapter, "__init__", recording)
        with kb.admin() as admin:
            assert admin.get("/v1/keys").status_code == 200
            assert admin.get("/v1/credentials").status_code == 200
            assert admin.get("/v1/audit").status_code == 200
            assert admin.post("/v1/keys", json={"unknown": 1}).status_code in (400, 422)
        assert loop_thread.name not in built_on, built_on


def test_a_failed_preparation_is_logged_once_and_the_admin_api_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def broken(app: object) -> None:
        calls.append(1)
        raise RuntimeError("no route tables today")

    monkeypatch.setattr(asgi, "warm_routes", broken)
    with KeybrakeThread(tmp_path / "data") as kb, kb.admin() as admin:
        assert calls == [1]  # at start, before any request
        for _ in range(3):
            assert admin.get("/v1/keys").status_code == 200
    assert calls == [1]
    failed = [r for r in caplog.records if "admin routes not prepared ahead" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelname == "ERROR"
