"""The settlement's audit UPDATE gets, for each column it sets, exactly what the full audit row
serialisation (`sql_rows._row_params`) gives: `_settle_params` only skips the columns a
settlement never writes. Pure code shared by both engines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.store.records import AuditRow
from keybrake.store.reservations import ReservedItem
from keybrake.store.sql_rows import _row_params
from keybrake.store.sql_settle import _SETTLE_COLS, _settle_params

TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.just("\x00"), max_size=12)
JSON = st.dictionaries(TEXT, st.one_of(st.none(), st.integers(), TEXT, st.lists(TEXT, max_size=3)), max_size=4)
ITEM = st.builds(ReservedItem, TEXT, TEXT, st.integers(0, 10**12), st.integers(0, 10**9), st.booleans())


@settings(max_examples=200)
@given(
    text=st.fixed_dictionaries(
        {f: st.none() | TEXT for f in ("error_code", "reason", "vendor_request_id", "vendor_object_id", "settled_by")}
    ),
    numbers=st.fixed_dictionaries(
        {f: st.none() | st.integers(-(10**9), 10**12) for f in ("status", "upstream_status", "cap_usage_after_usd")}
    ),
    latencies=st.fixed_dictionaries(
        {f: st.none() | st.floats(0, 1e6) for f in ("latency_ms", "upstream_latency_ms", "overhead_ms")}
    ),
    metadata=st.none() | JSON,
    redacted=st.none() | st.lists(TEXT, max_size=4),
    summary=st.none() | JSON,
    verdict=TEXT,
    cost=st.integers(0, 10**12),
    kept=st.none() | st.lists(ITEM, max_size=3),
)
def test_settle_params_equal_the_full_row_serialisation(
    text: dict[str, str | None],
    numbers: dict[str, int | None],
    latencies: dict[str, float | None],
    metadata: dict[str, object] | None,
    redacted: list[str] | None,
    summary: dict[str, object] | None,
    verdict: str,
    cost: int,
    kept: list[ReservedItem] | None,
) -> None:
    row = AuditRow(
        id="kbr_1",
        ts=1,
        method="POST",
        path="/v1/charges\x00",
        verdict=verdict,
        cost_usd=cost,
        cost_source="response",
        cost_kind="charge\x00",
        metadata=metadata,
        redacted_fields=redacted,
        request_summary=summary,
        **text,  # type: ignore[arg-type]
        **numbers,  # type: ignore[arg-type]
        **latencies,  # type: ignore[arg-type]
    )
    full = _row_params(row, None, kept)
    assert _settle_params(row, kept) == {c: full[c] for c in ("id", *_SETTLE_COLS)}
