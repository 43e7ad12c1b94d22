"""An export's scans are bounded per page, and an export cut by an error is unmistakably incomplete."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keybrake.core.errors import EnforcementUnavailable
from tests.bulk import agent_rows
from tests.harness import KeybrakeThread


def read_export(kb: KeybrakeThread, **params: str) -> tuple[int, bytes, str | None]:
    with kb.admin() as c, c.stream("GET", "/v1/audit/export", params=params) as r:
        body, err = b"", None
        try:
            for chunk in r.iter_bytes():
                body += chunk
        except httpx.HTTPError as exc:
            err = type(exc).__name__
        return r.status_code, body, err


@pytest.mark.timing
def test_an_export_past_a_rarely_matching_filter_is_complete_within_the_report_timeout(tmp_path: Path) -> None:
    """Red team k12 (scaled down): 1,500 rows of tenant-a, then an agent's flood of 1,000,000 rows,
    then 50 more of tenant-a, exported with `label_prefix=tenant-a:` under a 100 ms report
    timeout. Each page used to scan the flood in one statement (past the timeout: a 200 with
    1,000 of 1,550 rows, or only the header); each statement now scans at most 10,000 rows."""
    now = int(time.time() * 1000)
    with KeybrakeThread(tmp_path / "d", report_timeout_ms=100) as kb:
        tenant_a = {"id": "vk_tenant_a", "label": "tenant-a:agent"}
        agent_rows(kb, tenant_a, 1500, now - 600_000, verdict="allowed")
        agent_rows(kb, {"id": "vk_flood", "label": "tenant-x:agent"}, 1_000_000, now - 300_000)
        agent_rows(kb, tenant_a, 50, now - 60_000, verdict="allowed")
        status, body, err = read_export(kb, label_prefix="tenant-a:")
    lines = body.decode().splitlines()
    assert (status, err, len(lines) - 1) == (200, None, 1550)
    assert lines[0].startswith("id,ts,key_id,") and all(",tenant-a:agent," in ln for ln in lines[1:])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_cut_by_an_error_ends_without_the_final_chunk(tmp_path: Path, fmt: str) -> None:
    """A page failing after the 200 was sent (the report timeout, a lost database) must not look
    like a complete export: the body ends without HTTP's terminating chunk, httpx raises
    RemoteProtocolError and curl exits 18 (partial file)."""
    now = int(time.time() * 1000)
    with KeybrakeThread(tmp_path / "d") as kb:
        agent_rows(kb, {"id": "vk_a", "label": "a"}, 2500, now - 60_000)
        assert kb.app is not None
        store = kb.app.rt.store
        real = store.query_audit
        calls = 0

        async def failing_second_page(q: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise EnforcementUnavailable("the report ran past 100 ms", transient=True)
            return await real(q)

        store.query_audit = failing_second_page  # type: ignore[method-assign]
        status, body, err = read_export(kb, format=fmt)
        assert (status, err) == (200, "RemoteProtocolError")
        rows = body.decode().splitlines()
        assert len(rows) == 1000 + (fmt == "csv")
        curl = shutil.which("curl")
        if curl is not None:
            calls = 0
            token = kb.admin().headers["authorization"]
            done = subprocess.run(
                [curl, "-sS", "-o", str(tmp_path / "out"), "-H", f"Authorization: {token}",
                 f"{kb.admin_url}/v1/audit/export?format={fmt}"],
                capture_output=True, timeout=30,
            )  # fmt: skip
            assert done.returncode == 18, done.stderr
        assert "audit export cut" in kb.logs.text()


def test_an_export_whose_first_page_fails_is_an_error_answer_not_a_200(tmp_path: Path) -> None:
    """The first page is read before the 200 is sent: past the report timeout there, the answer
    is 503 `enforcement_unavailable` (docs/api.md), not an empty 200."""
    with KeybrakeThread(tmp_path / "d") as kb:
        assert kb.app is not None
        store = kb.app.rt.store

        async def timed_out(q: Any) -> Any:
            raise EnforcementUnavailable("the report ran past 100 ms", transient=True)

        store.query_audit = timed_out  # type: ignore[method-assign]
        with kb.admin() as c:
            r = c.get("/v1/audit/export", params={"format": "jsonl"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable"
