"""The chart geometry of the console's SVG charts (keybrake.console.charts): pure, so checked on
its own, with generated values included."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.console.charts import MAX_SLOT_LABELS, Chart, bar_chart, nice_max
from tests.harness import examples

HUGE = 10**18  # µUSD: a trillion dollars


def inside(c: Chart) -> None:
    """Every bar has an area and lies within the plot."""
    for b in c.bars:
        assert b.width > 0 and b.height > 0
        assert c.left - 1e-6 <= b.x and b.x + b.width <= c.left + c.plot_width + 1e-6
        assert c.top - 1e-6 <= b.y and b.y + b.height <= c.bottom + 1e-6


def test_nice_max_is_the_next_1_2_5_step() -> None:
    assert [nice_max(v) for v in (-3, 0, 1, 2, 3, 7, 10, 11, 20_000_001, 27_000_000)] == [
        1, 1, 1, 2, 5, 10, 10, 20, 50_000_000, 50_000_000
    ]  # fmt: skip


def test_a_chart_of_known_values() -> None:
    c = bar_chart([("2026-11-01", 0), ("2026-11-02", 20_000_000), ("2026-11-03", 5_000_000)],
                  width=400, height=200, margin_left=50, margin_right=10, margin_top=10, margin_bottom=30)  # fmt: skip
    assert (c.plot_width, c.plot_height, c.axis_max, c.bottom) == (340, 160, 20_000_000, 170)
    assert [(b.label, b.value) for b in c.bars] == [("2026-11-02", 20_000_000), ("2026-11-03", 5_000_000)]
    big, small = c.bars
    assert big.height == 160 and big.y == 10 and small.height == 40 and small.y == 130
    assert math.isclose(big.x, 50 + 340 / 3 + 340 / 30) and math.isclose(big.width, 340 / 3 * 0.8)
    assert [t.value for t in c.ticks] == [0, 5_000_000, 10_000_000, 15_000_000, 20_000_000]
    assert [t.y for t in c.ticks] == [170, 130, 90, 50, 10]
    assert [label.text for label in c.labels] == ["2026-11-01", "2026-11-02", "2026-11-03"]


def test_no_values_zero_values_and_one_value() -> None:
    for points in ([], [("a", 0)], [("a", 0), ("b", 0)]):
        c = bar_chart(points)
        assert c.bars == () and c.axis_max == 1 and [t.value for t in c.ticks] == [0, 1]
    one = bar_chart([("only", 3)])
    assert len(one.bars) == 1 and one.axis_max == 5
    assert math.isclose(one.bars[0].height, one.plot_height * 3 / 5)
    inside(one)


def test_labels_thin_out_on_long_ranges() -> None:
    c = bar_chart([(f"d{i}", i) for i in range(90)])
    assert len(c.labels) <= MAX_SLOT_LABELS and c.labels[0].text == "d0"
    assert len(c.bars) == 89  # d0 is 0: no bar


def test_margins_must_leave_a_plot() -> None:
    with pytest.raises(ValueError):
        bar_chart([("a", 1)], width=50, margin_left=40, margin_right=10)
    with pytest.raises(ValueError):
        bar_chart([("a", 1)], ticks=0)


@settings(max_examples=examples(200), deadline=None)
@given(
    values=st.lists(st.integers(min_value=-5, max_value=HUGE), min_size=0, max_size=120),
    width=st.integers(min_value=120, max_value=2000),
    height=st.integers(min_value=80, max_value=1000),
)
def test_bars_stay_in_the_plot_and_are_proportional(values: list[int], width: int, height: int) -> None:
    c = bar_chart([(str(i), v) for i, v in enumerate(values)], width=width, height=height)
    inside(c)
    positive = [v for v in values if v > 0]
    assert [b.value for b in c.bars] == positive  # one bar per positive value, in order
    assert c.axis_max >= max(positive, default=1)
    for b in c.bars:  # height / plot height == value / axis top
        assert math.isclose(b.height / c.plot_height, b.value / c.axis_max, rel_tol=1e-9)
    xs = [b.x for b in c.bars]
    assert xs == sorted(xs)
    assert all(a.x + a.width <= b.x + 1e-6 for a, b in zip(c.bars, c.bars[1:], strict=False))  # no overlap
    assert c.ticks[0].value == 0 and c.ticks[0].y == c.bottom and c.ticks[-1].value == c.axis_max
    assert math.isclose(c.ticks[-1].y, c.top)
