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
