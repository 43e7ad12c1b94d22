"""Tables for people: times as `YYYY-MM-DD hh:mm:ss UTC (3 min ago)` (RFC 3339 with --iso), and
lines that fit a terminal's width, cut cells marked `…`; a pipe gets whole cells, whatever COLUMNS says."""

from __future__ import annotations

import io
import re
import sys

import pytest
from click.testing import CliRunner

from keybrake.cli import main, tables
from keybrake.cli.tables import ago, cut, fit, human_time
from tests.harness import KeybrakeThread

NOW = 1_796_047_331.0  # 2026-11-30T14:02:11Z


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("2026-11-30T13:59:11.000Z", "2026-11-30 13:59:11 UTC (3 min ago)"),
        ("2026-11-30T14:02:01Z", "2026-11-30 14:02:01 UTC (just now)"),
        ("2026-11-30T16:02:11.500Z", "2026-11-30 16:02:11 UTC (in 2 h)"),
        ("2026-11-25T14:02:11.000Z", "2026-11-25 14:02:11 UTC (5 days ago)"),
        ("vk_abc", "vk_abc"),
        ("2026-11-30", "2026-11-30"),
        ("null", "null"),
    ],
)
def test_human_time(cell: str, shown: str) -> None:
    assert human_time(cell, NOW) == shown


def test_ago_words() -> None:
    assert [ago(s) for s in (10, 180, -180, 7200, 3 * 86400)] == [
        "just now", "3 min ago", "in 3 min", "2 h ago", "3 days ago"
    ]  # fmt: skip


def test_fit_narrows_the_widest_first_and_never_below_the_floor() -> None:
    assert fit([10, 40, 12], ["id", "label", "vendor"], None) == [10, 40, 12]
    out = fit([10, 40, 12], ["id", "label", "vendor"], 50)
    assert sum(out) + 4 <= 50 and out[0] == 10 and out[2] == 12
    assert fit([30, 30], ["aaaaaaaaaaaa", "b"], 10) == [12, 8]  # cannot fit: floors kept, the line wraps
    assert cut("abcdefghij", 5) == "abcd…" and cut("abc", 5) == "abc"


class _Out(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_only_a_terminal_is_fitted_whatever_columns_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI, test runners and some shells export COLUMNS: a pipe or a file still gets whole cells."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "stdout", _Out(tty=False))
    assert tables.terminal_width() is None
    monkeypatch.setattr(sys, "stdout", _Out(tty=True))
    assert tables.terminal_width() == 80


def test_keys_list_fits_the_terminal_and_shows_times_for_people(
    kb: KeybrakeThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb.issue({"daily_usd_cap": 5}, label="tenant-a:billing-agent:" + "x" * 80)
    env = {"KEYBRAKE_DATABASE_URL": kb.settings.database_url or "", "KEYBRAKE_ADMIN_TOKEN": ""}
    args = ["keys", "list", "--data-dir", str(kb.settings.data_dir)]
    monkeypatch.setattr(tables, "terminal_width", lambda: 120)  # a 120-column terminal
    narrow = CliRunner().invoke(main, args, env=env)
    assert narrow.exit_code == 0, narrow.output
    lines = narrow.output.splitlines()
    assert all(len(line) <= 120 for line in lines), lines
    assert "…" in lines[1] and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in 2\d h\)", narrow.output)
    monkeypatch.setattr(tables, "terminal_width", lambda: 400)
    iso = CliRunner().invoke(main, [*args, "--iso"], env=env)
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso.output) and "x" * 80 in iso.output
    monkeypatch.setattr(tables, "terminal_width", lambda: None)  # not a terminal: whole cells
    piped = CliRunner().invoke(main, args, env=env)
    assert "x" * 80 in piped.output
