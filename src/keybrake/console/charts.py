"""Bar chart geometry for the console's server-drawn SVG charts. Pure: values in, rectangles out.

A chart is a plot area inside margins (room for the value axis on the left and the slot labels
below). Each slot (a day, a label segment) gets an equal share of the plot's width; a slot with a
positive value gets a bar whose height is proportional to its value against the axis's top, a
"nice" number (1, 2 or 5 × 10^k) at or above the largest value. Values are integers in whatever
unit the caller uses (µUSD for money); nothing here formats them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_SLOT_LABELS = 10  # at most this many slot labels under a chart: more would overlap


@dataclass(frozen=True)
class Bar:
    """One bar: its rectangle in SVG user units (y grows downwards), and what it shows."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Tick:
    """A value-axis tick: the value (the caller's unit) and its height `y` in the SVG."""

    y: float
    value: int


@dataclass(frozen=True)
class SlotLabel:
    """A label under the slot it names, centred on `x`, with its baseline at `y`."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """A whole chart: the SVG's size, the plot area (left, top, width, height), bars, ticks, labels."""

    width: int
    height: int
    left: float
    top: float
    plot_width: float
    plot_height: float
    axis_max: int
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    labels: tuple[SlotLabel, ...]

    @property
    def bottom(self) -> float:
        """The plot's baseline (value 0)."""
        return self.top + self.plot_height


def nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^k (k ≥ 0) at or above `value`; 1 for 0 or less."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def bar_chart(
    points: Sequence[tuple[str, int]],
    *,
    width: int = 720,
    height: int = 240,
    margin_left: int = 72,
    margin_right: int = 8,
    margin_top: int = 10,
    margin_bottom: int = 28,
    ticks: int = 4,
) -> Chart:
    """The chart of `points` [(slot label, value)], in order. A bar for each positive value only
    (zero and negative values draw none); the value axis runs from 0 to `nice_max` of the largest
    value, with ticks at 0 and `ticks` even steps up to the top (rounded down to whole units).
    Raises ValueError when the margins leave no plot area or `ticks` < 1."""
    plot_w, plot_h = width - margin_left - margin_right, height - margin_top - margin_bottom
    if plot_w <= 0 or plot_h <= 0 or ticks < 1:
        raise ValueError("the margins leave no plot area, or ticks < 1")
    top_value = max((v for _, v in points), default=0)
    axis_max = nice_max(top_value)
    bottom = margin_top + plot_h
    bars: list[Bar] = []
    labels: list[SlotLabel] = []
    n = len(points)
    slot = plot_w / n if n else plot_w
    every = max(1, -(-n // MAX_SLOT_LABELS))  # label every `every`-th slot
    for i, (label, value) in enumerate(points):
        x = margin_left + i * slot
        if value > 0:
            h = plot_h * (value / axis_max)
            bars.append(Bar(x + slot * 0.1, bottom - h, slot * 0.8, h, label, value))
        if i % every == 0:
            labels.append(SlotLabel(x + slot / 2, bottom + 18, label))
    values = sorted({axis_max * k // ticks for k in range(ticks + 1)})
    tick_list = tuple(Tick(bottom - plot_h * (v / axis_max), v) for v in values)
    return Chart(
        width, height, margin_left, margin_top, plot_w, plot_h, axis_max, tuple(bars), tick_list, tuple(labels)
    )
