"""The budgets books for the budgets role's tests (tests/store/test_role_budgets*.py): keys, caps and
budgets to arrange, charges that reserve and settle as the pipeline does, relabels as
`PATCH /v1/keys/{id}` does, the reference model (`check_books`), and a store run as a replica.

The reference model reads the audit rows back and sums, in Python, the rows each budget covers
in each of its current windows: settled rows count their `cost_usd` (µUSD), rows still holding a
reservation count their `reserved_usd`; the counter must hold exactly that (`used + reserved`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window, window_start
from keybrake.store import open_store
from keybrake.store.base import (
    AuditQuery,
    AuditRow,
    BudgetRecord,
    CapSpec,
    KeyRecord,
    KeyState,
    ReservedItem,
    Settlement,
    Store,
)
from keybrake.store.ids import audit_id_floor, new_audit_id
from tests.harness import store_options

USD = 1_000_000  # µUSD per dollar
T0 = int(dt.datetime(2026, 3, 10, 16, 0, tzinfo=dt.UTC).timestamp() * 1000)  # 01:00 in Tokyo on the 11th
ZONES = ("UTC", "Asia/Tokyo", "America/New_York", "Pacific/Kiritimati", "Europe/Paris")


def key_record(store: Store, key_id: str, label: str, vendor: str = "stripe") -> KeyRecord:
    now = store.now_ms()
    return KeyRecord(key_id, vendor, "default", label, {}, {}, 1, "active", now, now + 400 * DAY_MS, None, None, None)


def key_caps(key_id: str, usd: int) -> list[CapSpec]:
    return [
        CapSpec("key", key_id, "daily_usd_cap", "daily_usd", Window.DAY, None, usd, True),
        CapSpec("key", key_id, "total_usd_cap", "total_usd", Window.TOTAL, None, usd, True),
    ]


def budget_record(
    bid: str, now: int, *, scope: str = "all", value: str | None = None, **fields: object
) -> BudgetRecord:
    base = BudgetRecord(bid, "b", scope, value, None, None, None, None, "UTC", now, now)
    return replace(base, **fields)  # type: ignore[arg-type]


async def hold(store: Store, key_id: str, usd: int) -> tuple[AuditRow, list[ReservedItem]] | None:
    """Reserve `usd` µUSD for a charge by `key_id`; None when a budget refused it."""
    now = store.now_ms()
    row = AuditRow(id=new_audit_id(now), ts=now, method="POST", path="/v1/charges", verdict="in_flight", key_id=key_id)
    row.reserved_usd = usd  # as the pipeline records the estimate it reserves
    res = await store.reserve(key_id, seen(store).versions.get(key_id, 1), key_caps(key_id, usd), row, "me")
    assert res.state is KeyState.OK, res.state
    if res.cap_hit is not None:
        return None
    return row, res.items


async def relabel(store: Store, key_id: str, label: str | None) -> None:
    """Change a key's label as `PATCH /v1/keys/{id}` does (the version guard included)."""
    k = await store.get_key(key_id)
    assert k is not None
    ok = await store.update_key(
        key_id, k.policy_version, label=label, metadata=k.metadata, policy=k.policy, expires_at=k.expires_at
    )
    assert ok
    seen(store).versions[key_id] = k.policy_version + 1
    seen(store).keys.pop(key_id, None)  # the reference reads the new label


async def settle_held(store: Store, held: tuple[AuditRow, list[ReservedItem]], cost: int) -> None:
    row, items = held
    row.verdict = "allowed"
    await store.settle(row, items, Settlement("allowed", cost, "response", "charge", False, True), None)


async def charge(store: Store, key_id: str, usd: int, cost: int | None = None) -> bool:
    held = await hold(store, key_id, usd)
    if held is None:
        return False
    await settle_held(store, held, usd if cost is None else cost)
    return True


def covers(b: BudgetRecord, k: KeyRecord) -> bool:
    """The reference rule (written again here): exact, case-sensitive prefix; equal vendor/credential."""
    if b.scope_kind == "all":
        return True
    if b.scope_kind == "label_prefix":
        return k.label is not None and k.label[: len(b.scope_value or "")] == b.scope_value
    return (k.vendor if b.scope_kind == "vendor" else k.credential) == b.scope_value


@dataclass
class Seen:
    """What the test knows of one store's keys: the reference's view of each key (dropped when
    relabelled) and each relabelled key's policy version (1 until then)."""

    keys: dict[str, KeyRecord | None] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


SEEN: weakref.WeakKeyDictionary[Store, Seen] = weakref.WeakKeyDictionary()


def seen(store: Store) -> Seen:
    return SEEN.setdefault(store, Seen())


async def check_books(store: Store) -> None:
    """Every budget counter of every current window == the reference sum of the audit rows it covers."""
    rows = await store.query_audit(AuditQuery(limit=100_000))
    keys: dict[str, KeyRecord | None] = {}
    for kid in {r["key_id"] for r in rows if r["key_id"]}:
        cache = seen(store).keys
        keys[kid] = cache.get(kid) or await store.get_key(kid)
        cache[kid] = keys[kid]
    now = store.now_ms()
    for b in await store.list_budgets():
        for cap in b.caps(0):
            ws = window_start(cap.window, now, cap.timezone)
            floor = audit_id_floor(ws)
            want_used = want_reserved = 0
            for r in rows:
                k = keys.get(r["key_id"])
                if k is None or not covers(b, k) or r["id"] < floor:
                    continue
                one = 1 if not cap.is_usd else None
                if r["verdict"] == "in_flight":
                    want_reserved += one or r["reserved_usd"]
                elif r["verdict"] in ("allowed", "outcome_unknown"):
                    want_used += one or r["cost_usd"]
            got = (await store.counters_for(f"budget:{b.id}", [(cap.counter, ws)]))[cap.counter]
            assert (got.used, got.reserved) == (want_used, want_reserved), (b, cap.counter, ws)


class Replica:
    """A store with its own event loop in its own thread, as a replica has."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.store = open_store(url, tmp, migrate=False, pg=store_options())
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(self.store, *args), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.store.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


async def add_key(s: Store, kid: str, label: str) -> None:
    await s.insert_key(key_record(s, kid, label), f"h_{kid}")


async def add_budget(s: Store, b: BudgetRecord) -> None:
    await s.insert_budget(b)


@contextlib.contextmanager
def charging_agents(
    replicas: list[Replica], agents: int, charge: Callable[[Replica, int, random.Random], object]
) -> Iterator[list[int]]:
    """`agents` threads charging in a loop (`charge(replica, agent, rng)`, agent i on replica i % 2)
    until the block ends; yields the running count of charges (`[n]`). On exit they are stopped
    and joined, and any error one of them raised fails the test."""
    stop = threading.Event()
    errors: list[BaseException] = []
    count = [0]

    def agent(i: int) -> None:
        rng = random.Random(i)
        try:
            while not stop.is_set():
                charge(replicas[i % 2], i, rng)
                count[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    for t in threads:
        t.start()
    try:
        yield count
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:3]
