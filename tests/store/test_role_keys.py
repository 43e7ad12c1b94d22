"""The keys role (`KeyStore`, the admin surface's), and one matching rule on every engine (issue
12, kind 2): every prefix filter means `str.startswith` — case-sensitive, code point by code
point, `%`, `_`, `\\` and quotes are themselves, the empty prefix matches every value — and
metadata matches are exact. The same matching table runs on SQLite and PostgreSQL (conftest.py),
and a generator compares each engine's answers with Python's.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import replace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window, window_start
from keybrake.store.base import (
    AuditQuery,
    AuditRow,
    AuditStore,
    BudgetRecord,
    BudgetStore,
    KeyQuery,
    KeyRecord,
    KeyStore,
    RetentionStore,
    Store,
)
from keybrake.store.ids import new_audit_id
from tests.harness import examples
from tests.store.contract import Clock

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


async def test_the_matching_table(store: Store, keys: KeyStore, audit: AuditStore) -> None:
    await _fill(store, LABELS)
    for p in PREFIXES:
        want = {lb for lb in LABELS if lb.startswith(p)}
        listed = await keys.list_keys(KeyQuery(label_prefix=p, limit=1000))
        assert {k.label for k in listed} == want, p
        rows = await audit.query_audit(AuditQuery(label_prefix=p, limit=1000))
        assert {r["label"] for r in rows} == want, p
        idem = await audit.query_audit(AuditQuery(idempotency_key_prefix=p, limit=1000))
        assert {r["idempotency_key"] for r in idem} == {lb for lb in want if lb}, p
        spend = await audit.spend("label", None, None, p, None)
        assert {s.group for s in spend} == want, p
        assert sum(s.charged for s in spend) == sum(1_000_000 * (i + 1) for i, lb in enumerate(LABELS) if lb in want)
    for lb in LABELS:  # metadata: exact value, under a key holding a quote and a backslash
        for meta in ({"tag": lb}, {'we"ird\\': lb}):
            listed = await keys.list_keys(KeyQuery(metadata=meta, limit=1000))
            assert [k.label for k in listed] == [lb], meta


async def test_a_label_prefix_budget_seeds_only_the_keys_it_covers(store: Store, budgets: BudgetStore) -> None:
    await _fill(store, LABELS)
    now = store.now_ms()
    for n, p in enumerate(PREFIXES):
        b = BudgetRecord(f"bud_m{n}", "b", "label_prefix", p, None, None, 10**12, None, "UTC", now, now)
        await budgets.insert_budget(b)
        got = (await budgets.counters_for(f"budget:{b.id}", [("total_usd", 0)]))["total_usd"]
        want = sum(1_000_000 * (i + 1) for i, lb in enumerate(LABELS) if lb.startswith(p))
        assert (got.used, got.reserved) == (want, 0), p
        day = window_start(Window.DAY, now)
        reqs = (await budgets.counters_for(f"budget:{b.id}", [("daily_requests", day)]))["daily_requests"]
        assert reqs.used == sum(1 for lb in LABELS if lb.startswith(p)), p


async def test_bulk_revoke_by_prefix_is_case_sensitive(store: Store, keys: KeyStore) -> None:
    """Issue 12, kind 2: `label_prefix` "acme:" revoked `ACME:billing:2` on SQLite too."""
    await _fill(store, ["acme:billing:1", "ACME:billing:2"])
    n, _ = await keys.revoke_keys(label_prefix="acme:", vendor=None, credential=None, reason="kill")
    assert n == 1
    active = await keys.list_keys(KeyQuery(status="active", limit=10))
    assert [k.label for k in active] == ["ACME:billing:2"]
    n, _ = await keys.revoke_keys(label_prefix="50%", vendor=None, credential=None, reason="kill")
    assert n == 0  # `%` is a character, not a wildcard


async def test_the_bulk_count_is_what_the_bulk_revoke_revokes(store: Store, clock: Clock, keys: KeyStore) -> None:
    """`revocable_keys` counts (and lists the newest of) the rows `revoke_keys` with the same
    filters revokes: status active, an expired key never revoked included, nothing changed."""
    await _fill(store, LABELS)
    for p in PREFIXES:
        n, first = await keys.revocable_keys(label_prefix=p, vendor=None, credential=None, limit=3)
        want = [lb for lb in LABELS if lb.startswith(p)]
        assert n == len(want) and len(first) == min(3, n) and all(k.label in want for k in first), p
    await keys.revoke_keys(label_prefix="acme:", vendor=None, credential=None, reason="x")  # revoked: not counted
    clock.ms += 2 * DAY_MS  # every key has expired, none was revoked since: a bulk revoke still marks them
    n, first = await keys.revocable_keys(label_prefix="a", vendor="stripe", credential="default", limit=100)
    assert sorted(k.label or "" for k in first) == ["aXb:1", "a_b:1", "acmé:x"]
    assert (await keys.revoke_keys(label_prefix="a", vendor="stripe", credential="default", reason="y"))[0] == n == 3
    assert await keys.revocable_keys(label_prefix="a", vendor="twilio", credential=None, limit=5) == (0, [])


async def test_a_change_needs_the_current_version_and_an_active_key(store: Store, keys: KeyStore) -> None:
    """`update_key` is a compare-and-set on the policy version (which it moves up by one); a revoke
    moves it too and is final: a revoked key cannot be changed, a second revoke changes nothing."""
    k = _key(store, 1, "a")
    await keys.insert_key(k, "h1")
    assert await keys.get_key("vk_missing") is None
    change = {"label": "b", "metadata": {"m": "1"}, "policy": {"daily_usd_cap": 5}, "expires_at": k.expires_at + 1}
    assert not await keys.update_key(k.id, 2, **change)  # type: ignore[arg-type]
    assert await keys.update_key(k.id, 1, **change)  # type: ignore[arg-type]
    got = await keys.get_key(k.id)
    assert got is not None and (got.label, got.metadata, got.policy, got.expires_at, got.policy_version) == (
        "b", {"m": "1"}, {"daily_usd_cap": 5}, k.expires_at + 1, 2
    )  # fmt: skip
    assert not await keys.update_key(k.id, 1, **change)  # type: ignore[arg-type]  # that version is gone
    revoked = await keys.revoke_key(k.id, "done")
    assert revoked is not None and (revoked.status, revoked.revoke_reason, revoked.policy_version) == (
        "revoked",
        "done",
        3,
    )
    assert not await keys.update_key(k.id, 3, **change)  # type: ignore[arg-type]
    again = await keys.revoke_key(k.id, "twice")
    assert again is not None and (again.revoke_reason, again.revoked_at) == ("done", revoked.revoked_at)
    assert await keys.revoke_key("vk_missing", "x") is None


async def test_keys_are_listed_newest_first_and_paged_by_cursor(store: Store, clock: Clock, keys: KeyStore) -> None:
    for i in range(7):
        clock.ms += i % 2  # pairs share a millisecond: the id breaks the tie
        await keys.insert_key(_key(store, i, f"l{i}"), f"h{i}")
    want = [k.id for k in sorted([await keys.get_key(f"vk_m{i:04d}") for i in range(7)],  # type: ignore[union-attr]
                                 key=lambda k: (k.created_at, k.id), reverse=True)]  # type: ignore[union-attr]  # fmt: skip
    got: list[str] = []
    cursor = None
    while True:
        page = await keys.list_keys(KeyQuery(cursor=cursor, limit=3))
        got += [k.id for k in page]
        if len(page) < 3:
            break
        cursor = (page[-1].created_at, page[-1].id)
    assert got == want
    assert [k.label for k in await keys.list_keys(KeyQuery(label="l3"))] == ["l3"]
    n, at = await keys.revoke_keys(label_prefix="l", vendor="stripe", credential="default", reason="all")
    assert (n, at) == (7, clock.ms)
    assert len(await keys.list_keys(KeyQuery(status="revoked"))) == 7


async def test_an_issuance_answer_is_recorded_once_and_found_for_a_day(
    store: Store, clock: Clock, keys: KeyStore, retention: RetentionStore
) -> None:
    """Idempotent `POST /v1/keys`: the first answer under (issuer, Idempotency-Key) is kept; a
    concurrent duplicate's is refused; after 24 hours the key may be used again."""
    assert await keys.issuance_get("adm_1", "idem", clock.ms - 1) is None
    assert await keys.issuance_put("adm_1", "idem", "hash-a", b"sealed-a")
    assert not await keys.issuance_put("adm_1", "idem", "hash-b", b"sealed-b")
    assert await keys.issuance_put("adm_2", "idem", "hash-c", b"sealed-c")  # per issuer
    assert await keys.issuance_get("adm_1", "idem", clock.ms - 1) == ("hash-a", b"sealed-a")
    assert await keys.issuance_get("adm_1", "idem", clock.ms + 1) is None  # recorded before `since`
    clock.ms += 24 * 3_600_000 + 1
    assert await retention.purge_issuances() == 2
    assert await keys.issuance_put("adm_1", "idem", "hash-d", b"sealed-d")


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
        for key_id, lb in ids.items():
            got = await store.get_key(key_id)
            assert got is not None and (got.status == "revoked") == lb.startswith(p), (p, lb)

    asyncio.run(go())
