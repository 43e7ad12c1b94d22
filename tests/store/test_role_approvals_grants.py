"""The approvals role's grants for the rest of a run (docs/approvals.md), on every engine: whatever
calls race for a grant, together they take at most the grant, and no amount ever adds to it."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.store.base import ApprovalRecord, Store
from tests.harness import examples
from tests.store.contract import DAY0, Clock, caps, key, row

_stores: weakref.WeakKeyDictionary[Callable[..., Store], Store] = weakref.WeakKeyDictionary()
_runs = iter(range(10**9))


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grant=st.integers(0, 100), amounts=st.lists(st.integers(-5, 60), min_size=1, max_size=12))
def test_racing_calls_never_take_more_than_the_grant_nor_add_to_it(
    open_engine: Callable[..., Store], grant: int, amounts: list[int]
) -> None:
    if open_engine not in _stores:
        _stores[open_engine] = open_engine(Clock(DAY0 + 3_600_000))
    store = _stores[open_engine]
    n = next(_runs)
    key_id, run = f"vk_g{n}", f"run:r{n}"

    async def go() -> Any:
        await store.insert_key(replace(key(store), id=key_id), f"h_{key_id}")
        r = replace(row(store), key_id=key_id)
        await store.reserve(key_id, 1, caps(key_id, 1, None), r, "ins_me")
        now = store.now_ms()
        rec = ApprovalRecord(
            id=f"apr_{r.id[4:]}", audit_id=r.id, key_id=key_id, label="l", agent_run_id=f"r{n}", vendor="stripe",
            method="POST", endpoint="/v1/refunds", amount_usd=1, summary=None, reasons=("r",), state="pending",
            created_at=now, expires_at=now + 60_000, owner="ins_me",
        )  # fmt: skip
        assert rec.run_scope == run
        assert await store.hold_approval(rec)
        taken, _ = await store.decide_approval(rec.id, "approved", "adm_a", None, grant_usd=grant)
        assert taken
        let_go = await asyncio.gather(*(store.use_grant(run, a) for a in amounts))
        went = [a for a, by in zip(amounts, let_go, strict=True) if by is not None]
        assert all(by == rec.id for by in let_go if by is not None)
        assert all(a >= 0 for a in went), went  # a negative amount would have grown the grant
        assert sum(went) <= grant
        left = grant - sum(went)  # exactly this is left: one µUSD more is refused, then all of it goes
        assert await store.use_grant(run, left + 1) is None
        assert await store.use_grant(run, left) == rec.id
        assert await store.use_grant(run, 1) is None

    asyncio.run(go())
