"""Audit retention: old rows go in batches (exported first if asked); rows still needed stay."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from keybrake.cli import main
from keybrake.proxy.retention import purge
from keybrake.store import open_store
from keybrake.store.base import AuditRow, CapSpec, Window
from keybrake.store.ids import new_audit_id
from keybrake.timefmt import DAY_MS
from tests import harness
from tests.store.test_store_contract import Clock, key

NOW = 1_800_000_000_000


def _row(ts: int, verdict: str = "allowed") -> AuditRow:
    return AuditRow(id=new_audit_id(ts), ts=ts, method="GET", path="/v1/balance", verdict=verdict, key_id="vk_1")


async def test_purge_deletes_old_rows_in_batches_and_exports_them_first(tmp_path: Path) -> None:
    clock = Clock(NOW - 100 * DAY_MS)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, clock=clock)
    await store.insert_key(key(store), "h1")
    old = [_row(NOW - (100 - i) * DAY_MS + i) for i in range(25)]  # 100 to 76 days old
    for r in old:
        await store.insert_audit(r)
    # a kept reservation (a pending estimate) from 95 days ago must survive
    kept = _row(NOW - 95 * DAY_MS + 7)
    cap = CapSpec("key", "vk_1", "total_usd_cap", "total_usd", Window.TOTAL, None, 5, True)
    clock.ms = kept.ts
    await store.reserve("vk_1", 1, [cap], kept, "ins")
    clock.ms = NOW
    recent = _row(NOW - DAY_MS)
    await store.insert_audit(recent)

    out = tmp_path / "purged"
    deleted = await purge(store, 90, out, batch=4)
    assert deleted == 10  # 100 to 91 days old, in batches of 4
    exported = [json.loads(line) for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]
    assert [e["id"] for e in exported] == [r.id for r in old[:10]]
    assert all((out / f.name).stat().st_mode & 0o777 == 0o600 for f in out.iterdir())
    for r in old[:10]:
        assert await store.get_audit(r.id) is None
    for r in (*old[10:], kept, recent):
        assert await store.get_audit(r.id) is not None
    assert await purge(store, 0, None) == 0  # 0 = keep forever
    await store.close()


def test_purge_cli(tmp_path: Path) -> None:
    from tests.harness import KeybrakeThread

    with KeybrakeThread(tmp_path / "d"):
        pass
    runner = CliRunner()
    off = runner.invoke(main, ["audit", "purge", "--older-than-days", "0", "--data-dir", str(tmp_path / "d")])
    assert off.exit_code != 0 and "retention is off" in off.output
    ok = runner.invoke(main, ["audit", "purge", "--older-than-days", "30", "--data-dir", str(tmp_path / "d")])
    assert ok.exit_code == 0 and "deleted 0 audit rows older than 30 days" in ok.output
