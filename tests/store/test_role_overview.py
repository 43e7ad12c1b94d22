"""The console overview's two reads, on every engine: refusals since a time counted by verdict and
code (`AuditStore.refusals_since`), and the active keys near a cap (`KeyStore.keys_near_caps`)."""

from __future__ import annotations

from dataclasses import replace

from keybrake.core.timefmt import DAY_MS
from keybrake.store.base import AuditRow, AuditStore, KeyStore, Store
from keybrake.store.ids import new_audit_id
from tests.store.contract import DAY0, Clock, caps, key, row

HOUR = 3_600_000


async def test_refusals_since_count_by_verdict_and_code(store: Store, clock: Clock, audit: AuditStore) -> None:
    kinds = [
        ("allowed", None),
        ("cap_exceeded", "spend_cap_exceeded"),
        ("denied_endpoint_not_allowed", "endpoint_not_allowed"),
        ("cap_exceeded", "spend_cap_exceeded"),
        ("upstream_error", "upstream_unreachable"),
        ("denied_endpoint_not_allowed", "endpoint_not_allowed"),
    ]
    for n, (verdict, code) in enumerate(kinds):
        ts = DAY0 + n * HOUR
        await store.insert_audit(AuditRow(id=new_audit_id(ts), ts=ts, method="POST", path="/v1/x",
                                          verdict=verdict, error_code=code, key_id="vk_1"))  # fmt: skip
    assert sorted(await audit.refusals_since(DAY0)) == [
        ("cap_exceeded", "spend_cap_exceeded", 2),
        ("denied_endpoint_not_allowed", "endpoint_not_allowed", 2),
        ("upstream_error", "upstream_unreachable", 1),
    ]
    assert sorted(await audit.refusals_since(DAY0 + 3 * HOUR)) == [  # since is inclusive
        ("cap_exceeded", "spend_cap_exceeded", 1),
        ("denied_endpoint_not_allowed", "endpoint_not_allowed", 1),
        ("upstream_error", "upstream_unreachable", 1),
    ]
    assert await audit.refusals_since(DAY0 + 6 * HOUR) == []


async def test_keys_near_caps_are_active_current_and_fullest_first(store: Store, keys: KeyStore) -> None:
    for key_id, amount in (("vk_1", 9_000_000), ("vk_2", 8_000_000), ("vk_3", 7_900_000), ("vk_4", 9_500_000)):
        await store.insert_key(key(store, key_id), f"h-{key_id}")
        r = await store.reserve(key_id, 1, caps(key_id, amount, 10_000_000), replace(row(store), key_id=key_id), "me")
        assert r.cap_hit is None
    await keys.revoke_key("vk_4", "gone")  # fullest, but revoked
    now = store.now_ms()
    current = [("daily_usd", DAY0), ("total_usd", 0)]
    near = await keys.keys_near_caps(current, 80, now, 10)
    assert [(c.scope, c.counter, c.used + c.reserved, c.limit) for c in near] == [
        ("key:vk_1", "daily_usd", 9_000_000, 10_000_000),
        ("key:vk_2", "daily_usd", 8_000_000, 10_000_000),  # exactly 80 %; vk_3 at 79 % is not near
    ]
    assert [c.scope for c in await keys.keys_near_caps(current, 80, now, 1)] == ["key:vk_1"]
    assert await keys.keys_near_caps([("daily_usd", DAY0 - DAY_MS)], 80, now, 10) == []  # yesterday's window
    assert await keys.keys_near_caps([], 80, now, 10) == []
    assert await keys.keys_near_caps(current, 80, now + 11 * DAY_MS, 10) == []  # every key expired by then
