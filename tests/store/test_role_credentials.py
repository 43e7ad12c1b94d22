"""A credential's keys cannot outlive it (issue 12, kind 3), on both engines: a key is bound to
the credential row's generation; deleting the credential revokes its keys in the same
transaction; a later credential that reuses the name is another generation and no older key
ever resolves to it. A generator interleaves issue, delete and re-add, on one store and
concurrently on two PostgreSQL replicas.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window
from keybrake.store import open_store
from keybrake.store.base import (
    AuditRow,
    CapSpec,
    CredentialInUse,
    CredentialRecord,
    CredentialStore,
    KeyRecord,
    KeyStore,
    Store,
)
from keybrake.store.ids import new_audit_id
from keybrake.tokens import new_id
from tests.harness import examples, store_options
from tests.store.contract import Clock
from tests.waits import wait_until


def _cred(store: Store, name: str, account: str) -> CredentialRecord:
    return CredentialRecord(name, "stripe", account.encode(), "sk_…", None, None, store.now_ms(), None, new_id("cg_"))


def _key(store: Store, key_id: str, cred: str) -> KeyRecord:
    now = store.now_ms()
    return KeyRecord(key_id, "stripe", cred, "t", {}, {}, 1, "active", now, now + DAY_MS, None, None, None)


async def _resolve(store: Store, key_id: str) -> bytes | None:
    """The sealed secret a request by this key would be sent with (None: refused or no credential)."""
    now = store.now_ms()
    caps = [CapSpec("key", key_id, "total_usd_cap", "total_usd", Window.TOTAL, None, 0, True)]
    row = AuditRow(id=new_audit_id(now), ts=now, method="GET", path="/v1/x", verdict="in_flight", key_id=key_id)
    res = await store.reserve(key_id, 1, caps, row, "me")
    if res.state.name != "OK" or res.credential is None:
        return None
    return res.credential.secret_enc


async def test_a_key_never_binds_to_a_later_credential_of_the_same_name(
    store: Store, credentials: CredentialStore, keys: KeyStore
) -> None:
    assert await credentials.insert_credential(_cred(store, "default", "acct_A"))
    k = await keys.issue_key(_key(store, "vk_1", "default"), "h1")
    assert k is not None and k.credential_gen.startswith("cg_")
    assert await _resolve(store, "vk_1") == b"acct_A"
    with pytest.raises(CredentialInUse):
        await credentials.delete_credential("default")  # active keys, not asked to revoke: nothing changes
    assert await credentials.delete_credential("default", revoke_keys=True, reason="gone") == 1
    assert (await keys.get_key("vk_1")).status == "revoked"  # type: ignore[union-attr]
    assert await keys.issue_key(_key(store, "vk_2", "default"), "h2") is None  # no credential: refused
    assert await credentials.insert_credential(_cred(store, "default", "acct_B"))
    # even a key that escaped revocation (un-revoked by hand here) cannot reach the new account
    await _unrevoke(store, "vk_1")
    assert (await keys.get_key("vk_1")).status == "active"  # type: ignore[union-attr]
    assert await _resolve(store, "vk_1") is None
    fresh = await keys.issue_key(_key(store, "vk_3", "default"), "h3")
    assert fresh is not None and await _resolve(store, "vk_3") == b"acct_B"


async def test_add_rotate_list_and_count_keys(
    store: Store, clock: Clock, credentials: CredentialStore, keys: KeyStore
) -> None:
    """A name is added once; a rotation replaces the secret and keeps the generation (keys stay
    bound); `active_key_count` counts active keys not yet expired; deleting nothing answers None."""
    first = _cred(store, "default", "acct_A")
    assert await credentials.insert_credential(first)
    assert not await credentials.insert_credential(_cred(store, "default", "acct_Z"))  # the name is taken
    clock.ms += 1
    assert await credentials.insert_credential(_cred(store, "other", "acct_O"))
    assert [c.name for c in await credentials.list_credentials()] == ["other", "default"]  # newest first
    for n in range(3):
        assert await keys.issue_key(_key(store, f"vk_{n}", "default"), f"h{n}") is not None
    await keys.revoke_key("vk_0", "test")
    assert await credentials.active_key_count("default") == 2
    clock.ms += DAY_MS  # the other two expire
    assert await credentials.active_key_count("default") == 0
    clock.ms += 1
    assert await credentials.rotate_credential("default", b"acct_B", "sk_…B", "https://x.test", True)
    assert not await credentials.rotate_credential("missing", b"x", "h", None, None)
    (got,) = [c for c in await credentials.list_credentials() if c.name == "default"]
    assert (got.secret_enc, got.secret_hint, got.base_url, got.livemode) == (b"acct_B", "sk_…B", "https://x.test", True)
    assert (got.generation, got.created_at, got.rotated_at) == (first.generation, first.created_at, clock.ms)
    assert await credentials.delete_credential("missing") is None


async def _unrevoke(store: Store, key_id: str) -> None:
    """Put a key back to active behind the store's back (what a lost race used to leave)."""
    sql = "UPDATE vault_keys SET status = 'active' WHERE id = ?"
    await store._run(lambda: store._write(sql, (key_id,)))  # type: ignore[attr-defined]


# -- the generator ----------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(0, 1)),
        st.tuples(st.just("delete"), st.integers(0, 1), st.booleans()),
        st.tuples(st.just("add"), st.integers(0, 1)),
    ),
    max_size=20,
)
_runs = iter(range(10**9))
_stores: weakref.WeakKeyDictionary[Callable[..., Store], Store] = weakref.WeakKeyDictionary()


async def _invariant(store: Store, names: list[str], issued: list[str], current: dict[str, bytes]) -> None:
    """Every key resolves to the live credential it was issued for, or to nothing."""
    for key_id in issued:
        k = await store.get_key(key_id)
        assert k is not None
        got = await _resolve(store, key_id)
        if got is not None:
            assert k.status == "active" and current.get(k.credential) == got, (key_id, got)
        cred = next((c for c in await store.list_credentials() if c.name == k.credential), None)
        if k.status == "active":  # an active key's credential row exists and is its generation
            assert cred is not None and cred.generation == k.credential_gen, key_id


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
@example(script=[("add", 0), ("issue", 0), ("delete", 0, True), ("add", 0), ("issue", 0)])
def test_issue_delete_readd_interleavings(open_engine: Callable[..., Store], script: list[tuple[Any, ...]]) -> None:
    run = next(_runs)
    names = [f"c{run}_a", f"c{run}_b"]

    async def go(store: Store) -> None:
        issued: list[str] = []
        current: dict[str, bytes] = {}
        for n, o in enumerate(script):
            name = names[o[1]]
            if o[0] == "issue":
                k = await store.issue_key(_key(store, f"vk_{run}_{n}", name), f"h_{run}_{n}")
                assert (k is None) == (name not in current)
                if k is not None:
                    issued.append(k.id)
            elif o[0] == "delete":
                try:
                    out = await store.delete_credential(name, revoke_keys=o[2], reason="x")
                except CredentialInUse:
                    assert not o[2]
                    out = -1
                if out is not None and out >= 0:
                    current.pop(name)
                else:
                    assert out == -1 or name not in current
            else:
                account = f"acct_{run}_{n}".encode()
                cred = _cred(store, name, account.decode())
                if await store.insert_credential(cred):
                    current[name] = account
            await _invariant(store, names, issued, current)

    if open_engine not in _stores:  # one store for every example; each has its own names and keys
        _stores[open_engine] = open_engine()
    asyncio.run(go(_stores[open_engine]))


@pytest.mark.pg_cluster
def test_keys_issued_on_one_replica_while_another_deletes_the_credential(pg_url: str, tmp_path: Path) -> None:
    """Issue 12, kind 3, at the store: 12 threads issue keys through replica B while replica A
    deletes the credential with revoke_keys; once the delete returns no active key references
    it, and after a re-add under the same name none of the keys resolves to the new account."""
    a, b = (
        open_store(pg_url, tmp_path, migrate=False, pg=store_options()),
        open_store(pg_url, tmp_path, migrate=False, pg=store_options()),
    )
    loop_a, loop_b = asyncio.new_event_loop(), asyncio.new_event_loop()
    for lp in (loop_a, loop_b):
        threading.Thread(target=lp.run_forever, daemon=True).start()

    def on(lp: asyncio.AbstractEventLoop, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, lp).result(30)

    try:
        for rnd in range(2):
            name = f"default{rnd}"
            assert on(loop_a, a.insert_credential(_cred(a, name, "acct_A")))
            issued: list[str] = []
            stop = threading.Event()

            tries: list[int] = []

            def issuer(
                t: int,
                name: str = name,
                stop: threading.Event = stop,
                issued: list[str] = issued,
                tries: list[int] = tries,
            ) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    k = on(loop_b, b.issue_key(_key(b, f"vk_{name}_{t}_{n}", name), f"h_{name}_{t}_{n}"))
                    tries.append(1)
                    if k is not None:
                        issued.append(k.id)

            threads = [threading.Thread(target=issuer, args=(t,)) for t in range(12)]
            for t in threads:
                t.start()

            def issuing(issued: list[str] = issued) -> bool:
                return len(issued) > 24

            wait_until(issuing, "issuers to get keys through replica B")
            on(loop_a, a.delete_credential(name, revoke_keys=True, reason="deleted"))
            active = on(loop_a, a.active_key_count(name))
            assert active == 0, active  # right when the delete returns, issuers still running
            after = len(tries)

            def racing(after: int = after, tries: list[int] = tries) -> bool:
                return len(tries) > after + 24

            wait_until(racing, "issuers to race past the delete")
            stop.set()
            for t in threads:
                t.join(30)
            assert on(loop_a, a.active_key_count(name)) == 0
            assert on(loop_a, a.insert_credential(_cred(a, name, "acct_B")))
            for key_id in issued[-40:]:  # the last ones raced the delete
                on(loop_a, _unrevoke(a, key_id))  # even if one had escaped the revoke
                assert on(loop_a, _resolve(a, key_id)) is None, key_id
    finally:
        on(loop_a, a.close())
        on(loop_b, b.close())
