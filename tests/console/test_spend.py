"""The spend page (docs/console.md, spend): per vendor per UTC day and per label segment, the
tables' numbers equal GET /v1/spend's, one SVG bar per day with spend, the range selector."""

from __future__ import annotations

import re
import time

from keybrake.console.format import usd
from keybrake.core.timefmt import DAY_MS, utc_day_start
from tests.console.overview_seed import seed
from tests.console.test_overview import text
from tests.console.test_sessions import signed_in
from tests.harness import KeybrakeThread


def report(kb: KeybrakeThread, group_by: str, since_ms: int, **params: str) -> list[dict[str, object]]:
    with kb.admin() as c:
        r = c.get("/v1/spend", params={"group_by": group_by, "since": str(since_ms // 1000), **params})
    assert r.status_code == 200, r.text
    data: list[dict[str, object]] = r.json()["data"]
    return data


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The body rows of a table, each as its cells' text."""
    start = html.index(f'<table id="{table_id}"')
    body = html[html.index("<tbody>", start) : html.index("</tbody>", start)]
    return [[text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]  # fmt: skip


def as_cells(r: dict[str, object]) -> list[str]:
    return [str(r["group"]), usd(r["charged_usd"]), usd(r["refunded_usd"]), usd(r["net_usd"]),
            str(r["requests"]), str(r["denied"]), str(r["cap_hits"])]  # fmt: skip


def svg(html: str, chart_id: str) -> str:
    start = html.index(f'<svg class="chart" id="{chart_id}"')
    return html[start : html.index("</svg>", start)]


def test_the_tables_are_the_spend_report_and_the_chart_has_a_bar_per_day(ckb: KeybrakeThread) -> None:
    seed(ckb)
    since = utc_day_start(int(time.time() * 1000)) - 29 * DAY_MS
    with signed_in(ckb) as c:
        r = c.get("/console/spend")
    assert r.status_code == 200
    html = r.text
    days = report(ckb, "day", since, vendor="stripe")
    assert len(days) == 1 and str(days[0]["charged_usd"]) == "27"
    assert table_rows(html, "table-stripe") == [as_cells(d) for d in days]
    labels = report(ckb, "label:1", since)
    assert [d["group"] for d in labels] == ["billing", "support"]
    assert table_rows(html, "table-labels") == [as_cells(d) for d in labels]
    chart = svg(html, "chart-stripe")
    bars = re.findall(r'<rect class="bar"[^>]*data-slot="([^"]+)" data-value="(\d+)"', chart)
    assert bars == [(str(days[0]["group"]), "27000000")]  # one bar: the one day with spend, in µUSD
    assert '<title id="chart-stripe-title">stripe charged per day, last 30 days (UTC)</title>' in chart
    assert 'aria-label="stripe charged per day, last 30 days (UTC)"' in chart
    assert "style" not in html.split("<main", 1)[1]  # presentation attributes only (CSP)
    label_bars = re.findall(r'<rect class="bar"[^>]*data-slot="([^"]+)"', svg(html, "chart-labels"))
    assert label_bars == ["billing", "support"]
    assert "selected>Last 30 days" in html


def test_the_range_selector_and_a_bad_range(ckb: KeybrakeThread) -> None:
    with signed_in(ckb) as c:
        week = c.get("/console/spend", params={"days": "7", "segments": "2"})
        assert week.status_code == 200
        assert "selected>Last 7 days" in week.text and "selected>First 2" in week.text
        assert "No spend in the last 7 days." in week.text
        for bad in ("8", "-7", "abc", "30.0", "9999999999999999999999"):
            r = c.get("/console/spend", params={"days": bad})
            assert r.status_code == 400, bad
            assert "days must be one of 7, 30, 90; showing 30." in r.text
            assert "selected>Last 30 days" in r.text
        r = c.get("/console/spend", params={"segments": "4"})
        assert r.status_code == 400 and "segments must be one of 1, 2, 3; showing 1." in r.text
