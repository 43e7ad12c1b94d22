"""A table fitted to a narrow terminal never cuts an id (the one cell a person copies into the
next command), and a label in a wide script does not push a line past the terminal's width."""

from __future__ import annotations

import unicodedata

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.cli import main, tables
from keybrake.cli.tables import cut, fit, pad, width
from tests.harness import KeybrakeThread


def _columns(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _keys_list(kb: KeybrakeThread, columns: int) -> list[str]:
    """`keybrake keys list` as a terminal `columns` wide shows it."""
    env = {"KEYBRAKE_DATABASE_URL": kb.settings.database_url or "", "KEYBRAKE_ADMIN_TOKEN": ""}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables, "terminal_width", lambda: columns)
        out = CliRunner().invoke(main, ["keys", "list", "--data-dir", str(kb.settings.data_dir)], env=env)
    assert out.exit_code == 0, out.output
    return out.output.splitlines()


def test_an_id_is_whole_in_an_80_column_terminal(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5}, label="tenant-a:billing-agent:" + "x" * 60)
    lines = _keys_list(kb, 80)
    assert any(key["id"] in line for line in lines[1:]), lines


def test_a_wide_script_label_stays_within_the_terminal(kb: KeybrakeThread) -> None:
    kb.issue({"daily_usd_cap": 5}, label="請求エージェント" * 8)
    lines = _keys_list(kb, 120)
    assert all(_columns(line) <= 120 for line in lines), [(_columns(line), line) for line in lines]


@settings(max_examples=200, deadline=None)
@given(
    widths=st.lists(st.integers(1, 60), min_size=2, max_size=7),
    total=st.integers(20, 200),
)
def test_fit_never_narrows_an_id_column(widths: list[int], total: int) -> None:
    headers = ["id", *[f"c{i}" for i in range(len(widths) - 1)]]
    assert fit(widths, headers, total)[0] == widths[0]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30), cols=st.integers(1, 40))
def test_a_cut_cell_takes_at_most_its_columns_and_keeps_a_prefix(text: str, cols: int) -> None:
    out = cut(text, cols)
    assert out == text or (out.endswith("…") and text.startswith(out[:-1]) and width(out) <= cols)
    assert width(pad(out, cols)) >= cols
