"""One matching rule on every engine (issue 12, kind 2): every prefix filter means
`str.startswith` — case-sensitive, code point by code point, `%`, `_`, `\\` and quotes are
themselves, the empty prefix matches every value — and metadata matches are exact. The same
matching table runs on SQLite and PostgreSQL (conftest.py), and a generator compares each
engine's answers with Python's.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window, window_start
from keybrake.store.base import AuditQuery, AuditRow, BudgetRecord, KeyQuery, KeyRecord, Store
from keybrake.store.ids import new_audit_id
from tests.harness import examples

LABELS = [
    "acme:billing:1",
    "ACME:billing:2",
    "Acme:billing:3",
    "acmé:x",
    "ACMÉ:x",
    "o'brien:1",
    'q"uote:1',
    "50%:a",
    "50x:a",
    "a_b:1",
    "aXb:1",
    "back\\slash",
    "日本:1",
    "ß:1",
    "SS:1",
    "ǆ:1",
    "Ǆ:1",
    "e\u0301:decomposed",
    "é:composed",
    "",
]
PREFIXES = [
    "acme:",
    "ACME:",
    "acmé",
    "ACMÉ",
    "50%",
    "5%",
    "a_b",
    "a_",
    "o'",
    'q"',
    "",
    "acme:billing:1",
    "acme:billing:1x",
    "back\\",
    "back\\s",
    "日本",
    "ß",
    "ss",
    "ǆ",
    "e\u0301",
    "é",
    "%",
    "_",
]


def _key(store: Store, i: int, label: str | None, metadata: dict[str, str] | None = None) -> KeyRecord:
    now = store.now_ms()
    return KeyRecord(
        f"vk_m{i:04d}", "stripe", "default", label, metadata or {}, {}, 1, "active", now, now + DAY_MS, None, None, None
    )


@pytest.fixture
def store_for_matching(open_engine: Callable[..., Store]) -> Store:
    return open_engine()


async def _fill(store: Store, labels: list[str]) -> None:
    for i, label in enumerate(labels):
        await store.insert_key(_key(store, i, label, {"tag": label, 'we"ird\\': label}), f"h{i}")
        now = store.now_ms()
        await store.insert_audit(
            AuditRow(
                id=new_audit_id(now),
                ts=now,
                method="POST",
                path="/v1/charges",
                verdict="allowed",
                key_id=f"vk_m{i:04d}",
                label=label,
                vendor="stripe",
                cost_usd=1_000_000 * (i + 1),
                idempotency_key=label or None,
            )
        )


async def test_the_matching_table(store_for_matching: Store) -> None:
    store = store_for_matching
    await _fill(store, LABELS)
    for p in PREFIXES:
        want = {lb for lb in LABELS if lb.startswith(p)}
        keys = await store.list_keys(KeyQuery(label_prefix=p, limit=1000))
        assert {k.label for k in keys} == want, p
        rows = await store.query_audit(AuditQuery(label_prefix=p, limit=1000))
        assert {r["label"] for r in rows} == want, p
        idem = await store.query_audit(AuditQuery(idempotency_key_prefix=p, limit=1000))
        assert {r["idempotency_key"] for r in idem} == {lb for lb in want if lb}, p
        spend = await store.spend("label", None, None, p, None)
        assert {s.group for s in spend} == want, p
        assert sum(s.charged for s in spend) == sum(1_000_000 * (i + 1) for i, lb in enumerate(LABELS) if lb in want)
    for lb in LABELS:  # metadata: exact value, under a key holding a quote and a backslash
        for meta in ({"tag": lb}, {'we"ird\\': lb}):
            keys = await store.list_keys(KeyQuery(metadata=meta, limit=1000))
            assert [k.label for k in keys] == [lb], meta


async def test_a_label_prefix_budget_seeds_only_the_keys_it_covers(store_for_matching: Store) -> None:
    store = store_for_matching
    await _fill(store, LABELS)
    now = store.now_ms()
    for n, p in enumerate(PREFIXES):
        b = BudgetRecord(f"bud_m{n}", "b", "label_prefix", p, None, None, 10**12, None, "UTC", now, now)
        await store.insert_budget(b)
        got = (await store.counters_for(f"budget:{b.id}", [("total_usd", 0)]))["total_usd"]
        want = sum(1_000_000 * (i + 1) for i, lb in enumerate(LABELS) if lb.startswith(p))
        assert (got.used, got.reserved) == (want, 0), p
        day = window_start(Window.DAY, now)
        reqs = (await store.counters_for(f"budget:{b.id}", [("daily_requests", day)]))["daily_requests"]
        assert reqs.used == sum(1 for lb in LABELS if lb.startswith(p)), p


async def test_bulk_revoke_by_prefix_is_case_sensitive(store_for_matching: Store) -> None:
    """Issue 12, kind 2: `label_prefix` "acme:" revoked `ACME:billing:2` on SQLite too."""
    store = store_for_matching
    await _fill(store, ["acme:billing:1", "ACME:billing:2"])
    n, _ = await store.revoke_keys(label_prefix="acme:", vendor=None, credential=None, reason="kill")
    assert n == 1
    active = await store.list_keys(KeyQuery(status="active", limit=10))
    assert [k.label for k in active] == ["ACME:billing:2"]
    n, _ = await store.revoke_keys(label_prefix="50%", vendor=None, credential=None, reason="kill")
    assert n == 0  # `%` is a character, not a wildcard


# -- the generator ----------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("aAbB:%_\\'\"é É ßs日ǆǄ\u0301-"))
text = st.text(ALPHABET, max_size=6)
_runs = iter(range(10**9))
_stores: weakref.WeakKeyDictionary[Callable[..., Store], Store] = weakref.WeakKeyDictionary()


def _shared_store(open_engine: Callable[..., Store]) -> Store:
    """One store for every example of a test run (the fixture closes it); each example has its own keys."""
    if open_engine not in _stores:
        _stores[open_engine] = open_engine()
    return _stores[open_engine]


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(text, min_size=1, max_size=8), prefixes=st.lists(text, min_size=1, max_size=4), data=st.data())
@example(labels=["acme:billing:1", "ACME:billing:2"], prefixes=["acme:"], data=None)
def test_every_filter_agrees_with_str_startswith(
    open_engine: Callable[..., Store], labels: list[str], prefixes: list[str], data: st.DataObject | None
) -> None:
    """Random labels and prefixes drawn from the characters engines disagree on (case, accents,
    wildcards, quotes, backslash): list and revoke answer exactly Python's `startswith`."""
    run = next(_runs)
    if data is not None:  # a prefix of one of the labels, often: the interesting case
        prefixes = [*prefixes, data.draw(st.sampled_from(labels))[: data.draw(st.integers(0, 6))]]

    async def go() -> None:
        await _check(_shared_store(open_engine))

    async def _check(store: Store) -> None:
        ids = {}
        for i, lb in enumerate(labels):
            k = replace(_key(store, i, lb), id=f"vk_g{run}_{i}")
            await store.insert_key(k, f"h_g{run}_{i}")
            ids[k.id] = lb
        for p in prefixes:
            listed = await store.list_keys(KeyQuery(label_prefix=p, status="active", limit=10_000))
            mine = {k.id for k in listed if k.id in ids}
            assert mine == {i for i, lb in ids.items() if lb.startswith(p)}, (p, labels)
        p = prefixes[-1]
        await store.revoke_keys(label_prefix=p, vendor=None, credential=None, reason="g")
        for kid, lb in ids.items():
            got = await store.get_key(kid)
            assert got is not None and (got.status == "revoked") == lb.startswith(p), (p, lb)

    asyncio.run(go())
