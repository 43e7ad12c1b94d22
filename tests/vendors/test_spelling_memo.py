"""A vendor remembers the (method, path) spellings it accepted (vendors/base.py, `check_spelling`):
a refused spelling is refused every time, an accepted one is not checked again, and the memory
is bounded."""

from __future__ import annotations

import pytest

from keybrake.core.errors import Denial
from keybrake.vendors import base as vendor_base
from keybrake.vendors import build_vendors


def test_a_case_variant_is_refused_every_time_and_never_remembered() -> None:
    stripe = build_vendors()["stripe"]
    for _ in range(3):
        with pytest.raises(Denial) as refused:
            stripe.canonical("POST", ("v1", "Charges"))
        assert refused.value.code == "path_invalid"
    assert ("POST", ("v1", "Charges")) not in (stripe._spelled or {})  # type: ignore[attr-defined]


def test_an_accepted_spelling_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stripe = build_vendors()["stripe"]
    calls: list[tuple[str, tuple[str, ...]]] = []
    real = vendor_base.check_path_spelling

    def counting(method: str, path: tuple[str, ...], *patterns: object, **kw: object) -> None:
        calls.append((method, path))
        real(method, path, *patterns, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(vendor_base, "check_path_spelling", counting)
    for _ in range(3):
        assert stripe.canonical("POST", ("v1", "charges")) == ("v1", "charges")
    assert calls == [("POST", ("v1", "charges"))]
    twilio = build_vendors()["twilio"]
    path = ("2010-04-01", "Accounts", "AC" + "0" * 32, "Messages.json")
    for _ in range(2):
        twilio.canonical("POST", path)
    assert calls.count(("POST", path)) == 1


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor_base, "_SPELLED_MAX", 10)
    stripe = build_vendors()["stripe"]
    for i in range(25):
        stripe.canonical("GET", ("v1", "charges", f"ch_{i}"))
    assert 0 < len(stripe._spelled or {}) <= 10  # type: ignore[attr-defined]


def _memo(vendor: object) -> tuple[dict[tuple[str, tuple[str, ...]], None], int]:
    return getattr(vendor, "_spelled", None) or {}, getattr(vendor, "_spelled_bytes", 0)


def test_a_long_path_is_checked_but_never_remembered() -> None:
    stripe = build_vendors()["stripe"]
    long_path = ("v1", "customers", "cus_" + "x" * 300)
    assert stripe.canonical("GET", long_path) == long_path
    deep = ("v1", "customers", *("a" * 5 for _ in range(20)))
    stripe.canonical("GET", deep)
    short = ("v1", "customers", "cus_1")
    stripe.canonical("GET", short)
    memo, size = _memo(stripe)
    assert list(memo) == [("GET", short)]
    assert size == vendor_base.spelled_cost(short)


def test_a_flood_of_long_distinct_paths_keeps_the_memo_within_its_bytes() -> None:
    """The red team's flood (spelled_mem.py): thousands of distinct ~15 KB paths. Entries and
    estimated bytes stay within the bounds, and the running byte count is exact."""
    twilio = ("2010-04-01", "Accounts", "AC" + "0" * 32, "Messages")
    for vendor, prefix in ((build_vendors()["stripe"], ("v1", "customers")), (build_vendors()["twilio"], twilio)):
        for i in range(5000):
            vendor.canonical("GET", (*prefix, f"{i:06d}" + "q" * 15000))
        memo, size = _memo(vendor)
        assert len(memo) == 0 and size == 0
        peak, fill = 0, vendor_base._SPELLED_PATH_MAX - 16 - sum(map(len, prefix))  # twilio adds .json
        for i in range(20000):  # paths at the length bound: the byte cap clears the memo
            vendor.canonical("GET", (*prefix, f"{i:06d}" + "q" * fill))
            memo, size = _memo(vendor)
            if i % 997 == 0:
                assert size == sum(vendor_base.spelled_cost(p) for _, p in memo)
            peak = max(peak, size)
        assert 0 < peak <= vendor_base._SPELLED_BYTES
        assert 0 < len(memo) <= vendor_base._SPELLED_MAX
