"""The console's audit search and run timeline over HTTP (docs/console.md): filters as the API reads
them, cursor paging both ways, a bad filter shown on the page with what was typed kept, the
exports (the API's columns), and a run's calls in order across pages."""

from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from keybrake.console.routes import audit as audit_route
from keybrake.console.routes import runs as runs_route
from keybrake.console.web import run_path
from keybrake.core.audit_lines import EXPORT_FIELDS
from tests.approval_holds import decide, hold
from tests.console.test_sessions import signed_in
from tests.harness import KeybrakeThread


def _calls(kb: KeybrakeThread, key: dict[str, Any], n: int, path: str = "/v1/customers") -> None:
    """`n` proxied Stripe GETs with `key` (allowed or denied by its policy), a few at a time."""

    def one(_: int) -> int:
        r = httpx.get(f"{kb.url}/stripe{path}", headers={"Authorization": f"Bearer {key['key']}"}, timeout=30)
        return r.status_code

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))


def test_filters_and_cursor_paging_both_ways(ckb: KeybrakeThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_route, "PAGE", 10)
    busy = ckb.issue({"daily_usd_cap": 100}, label="tenant-a:agent", metadata={"agent_run_id": "run-busy"})
    quiet = ckb.issue({"allowed_endpoints": ["GET /v1/charges"], "daily_usd_cap": 10}, label="tenant-b:agent")
    _calls(ckb, busy, 23)
    _calls(ckb, quiet, 3)  # denied: endpoint_not_allowed
    rows = ckb.audit(key_id=busy["id"])
    assert len(rows) == 23
    with signed_in(ckb) as c:
        first = c.get("/console/audit", params={"key_id": busy["id"]})
        assert first.status_code == 200
        assert len(_ids_in(first.text)) == 10
        assert quiet["id"] not in first.text and busy["key"] not in first.text
        seen: list[str] = []
        page = first
        for _ in range(5):  # Older rows until the end: every row of the key once, newest first
            seen += _ids_in(page.text)
            older = re.search(r'href="([^"]+)" rel="next"', page.text)
            if older is None:
                break
            page = c.get(older.group(1).replace("&amp;", "&"))
            assert page.status_code == 200
        assert seen == [r["id"] for r in rows]
        # Newer rows from the last page goes back up to the page before it, same rows
        newer = re.search(r'href="([^"]+)" rel="prev"', page.text)
        assert newer is not None
        back = c.get(newer.group(1).replace("&amp;", "&"))
        assert _ids_in(back.text) == [r["id"] for r in rows][10:20]
        # the verdict filter (`denied` = every denied_*) and the label prefix
        denied = c.get("/console/audit", params={"verdict": "denied", "label_prefix": "tenant-b"})
        assert denied.text.count("denied_endpoint_not_allowed") == 3 and busy["id"] not in denied.text
        assert "endpoint_not_allowed" in denied.text  # the deny code and the reason are shown
        none = c.get("/console/audit", params={"vendor": "twilio"})
        assert none.status_code == 200 and "No audit rows match" in none.text


def _ids_in(html: str) -> list[str]:
    """The audit row ids of a page's table rows, in the order shown."""
    return re.findall(r'<tr id="(kbr_[0-9A-Z]+)">', html)


def test_a_bad_filter_shows_the_api_message_and_keeps_what_was_typed(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        r = c.get("/console/audit", params={"since": "yesterday-ish", "key_id": "vk_typed<1>", "verdict": "odd"})
        assert r.status_code == 400
        assert "since:" in r.text and 'role="alert"' in r.text
        assert 'value="yesterday-ish"' in r.text and 'value="vk_typed&lt;1&gt;"' in r.text
        assert '<option value="odd" selected>' in r.text
        r = c.get("/console/audit", params={"cursor": "not-a-cursor"})
        assert r.status_code == 400 and "cursor is not one this API returned" in r.text
        r = c.get("/console/audit", params={"colour": "red"})
        assert r.status_code == 400 and "unknown query parameter" in r.text
        r = c.get("/console/audit/export", params={"format": "xml"})
        assert r.status_code == 400 and "format must be csv or jsonl" in r.text


def test_exports_are_the_apis_columns_and_rows(ckb: KeybrakeThread) -> None:
    key = ckb.issue({"daily_usd_cap": 100}, metadata={"agent_run_id": "run-exp/1"})
    _calls(ckb, key, 4)
    with signed_in(ckb) as c, ckb.admin() as api:
        got = c.get("/console/audit/export", params={"key_id": key["id"], "format": "csv"})
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
        assert got.headers["content-disposition"] == 'attachment; filename="keybrake-audit.csv"'
        want = api.get("/v1/audit/export", params={"key_id": key["id"], "format": "csv"})
        assert got.text == want.text
        table = list(csv.reader(io.StringIO(got.text)))
        assert tuple(table[0]) == EXPORT_FIELDS and len(table) == 5
        lines = c.get("/console/audit/export", params={"key_id": key["id"], "format": "jsonl"})
        assert lines.headers["content-disposition"] == 'attachment; filename="keybrake-audit.jsonl"'
        assert [json.loads(x)["key_id"] for x in lines.text.splitlines()] == [key["id"]] * 4
        run = c.get(run_path("run-exp/1") + "/export", params={"format": "jsonl"})
        assert run.status_code == 200
        assert run.headers["content-disposition"] == 'attachment; filename="keybrake-run-run-exp_1.jsonl"'
        assert run.text == api.get("/v1/audit/export", params={"agent_run_id": "run-exp/1", "format": "jsonl"}).text


def test_a_run_timeline_is_in_order_across_pages(ckb: KeybrakeThread, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_route, "PAGE", 7)
    key = ckb.issue({"daily_usd_cap": 100}, metadata={"agent_run_id": "run-long"})
    other = ckb.issue({"daily_usd_cap": 100}, metadata={"agent_run_id": "run-other"})
    _calls(ckb, key, 16)
    _calls(ckb, other, 2)
    want = [r["id"] for r in reversed(ckb.audit(agent_run_id="run-long"))]  # oldest first
    with signed_in(ckb) as c:
        page = c.get("/console/runs/run-long")
        assert page.status_code == 200
        assert re.search(r"Calls</div><div class=\"big\">16<", page.text)
        seen = _ids_in(page.text)
        pages = [seen]
        while (later := re.search(r'href="([^"]+)" rel="next"', page.text)) is not None:
            page = c.get(later.group(1).replace("&amp;", "&"))
            pages.append(_ids_in(page.text))
        assert [len(p) for p in pages] == [7, 7, 2]
        assert [i for p in pages for i in p] == want
        earlier = re.search(r'href="([^"]+)" rel="prev"', page.text)
        assert earlier is not None
        assert _ids_in(c.get(earlier.group(1).replace("&amp;", "&")).text) == pages[1]
        # the runs page lists both runs; its form opens a timeline; an unknown run's page says no call names it
        runs = c.get("/console/runs")
        assert "run-long" in runs.text and "run-other" in runs.text
        go = c.get("/console/runs", params={"agent_run_id": "run-long"})
        assert go.status_code == 303 and go.headers["location"] == "/console/runs/run-long"
        missing = c.get("/console/runs/run-none")
        assert missing.status_code == 200 and "No audit row names this agent run" in missing.text


def test_a_held_calls_approval_state_and_agent_strings_are_shown_escaped(ckb: KeybrakeThread) -> None:
    key, call, listed = hold(ckb, metadata={"agent_run_id": "run-<held>"}, label="ops:<b>agent</b>")
    assert decide(ckb, listed["id"], "approve").status_code == 200
    call.done()
    assert call.error is None
    with signed_in(ckb) as c:
        found = c.get("/console/audit", params={"key_id": key["id"]})
        assert '<span class="state-approved">approved</span>' in found.text
        assert "ops:&lt;b&gt;agent&lt;/b&gt;" in found.text and "<b>agent</b>" not in found.text
        run = c.get(run_path("run-<held>"))
        assert run.status_code == 200 and "approval approved" in run.text
        assert "run-&lt;held&gt;" in run.text and "run-<held>" not in run.text


def test_a_rare_filter_is_searched_window_by_window_without_skipping(
    ckb: KeybrakeThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_route, "SCAN_WINDOW", 5)
    monkeypatch.setattr(audit_route, "PAGE", 2)
    quiet = ckb.issue({"allowed_endpoints": ["GET /v1/charges"]}, label="rare")
    busy = ckb.issue({"daily_usd_cap": 100}, label="busy")
    _calls(ckb, quiet, 3)  # the oldest rows: denied
    _calls(ckb, busy, 12)
    want = [r["id"] for r in ckb.audit(verdict="denied")]
    assert len(want) == 3
    with signed_in(ckb) as c:
        page = c.get("/console/audit", params={"verdict": "denied"})
        assert _ids_in(page.text) == [] and "This page looked at the 5 rows down to" in page.text
        seen, pages = [], [page]
        while (older := re.search(r'href="([^"]+)" rel="next"', page.text)) is not None:
            page = c.get(older.group(1).replace("&amp;", "&"))
            assert page.status_code == 200
            seen += _ids_in(page.text)
            pages.append(page)
        assert seen == want  # every match once, newest first, across windows
        back: list[str] = []
        while (newer := re.search(r'href="([^"]+)" rel="prev"', page.text)) is not None:
            page = c.get(newer.group(1).replace("&amp;", "&"))
            back = _ids_in(page.text) + back
        last = _ids_in(pages[-1].text)  # Newer rows back to the top: every match above the last page, once
        assert back == [i for i in want if i not in last]
