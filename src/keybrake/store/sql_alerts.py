"""Queries (every SQL engine) for alert destinations, the delivery outbox and fire-once marks."""

from __future__ import annotations

import json

from keybrake.store.base import AlertDestination, CounterUsage, Delivery, KeyRecord
from keybrake.store.ids import audit_id_floor
from keybrake.store.sql_base import Row, SQLBase, blocking
from keybrake.store.sql_rows import _key

_DELIVERY_COLS = tuple(Delivery.__dataclass_fields__)


def _dest(r: Row) -> AlertDestination:
    return AlertDestination(
        r["id"],
        r["type"],
        r["url"],
        bytes(r["secret_enc"]),
        tuple(json.loads(r["events"])),
        tuple(json.loads(r["thresholds"])),
        r["created_at"],
        r["anomaly_factor"],
    )


def _delivery(r: Row) -> Delivery:
    return Delivery(**{c: r[c] for c in _DELIVERY_COLS})


class AlertQueries(SQLBase):
    @blocking
    def insert_alert(self, dest: AlertDestination) -> None:
        self._write(
            "INSERT INTO alert_destinations (id, type, url, secret_enc, events, thresholds, created_at, anomaly_factor)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dest.id,
                dest.type,
                dest.url,
                dest.secret_enc,
                json.dumps(list(dest.events)),
                json.dumps(list(dest.thresholds)),
                dest.created_at,
                dest.anomaly_factor,
            ),
        )

    @blocking
    def list_alerts(self) -> list[AlertDestination]:
        return [_dest(r) for r in self._read("SELECT * FROM alert_destinations ORDER BY created_at, id")]

    @blocking
    def delete_alert(self, alert_id: str) -> bool:
        with self._tx() as cur:
            return cur.execute("DELETE FROM alert_destinations WHERE id = ?", (alert_id,)).rowcount == 1

    @blocking
    def enqueue(self, deliveries: list[Delivery], fire_key: str | None) -> bool:
        cols = ", ".join(_DELIVERY_COLS)
        marks = ", ".join(":" + c for c in _DELIVERY_COLS)
        with self._tx() as cur:
            if fire_key is not None:
                fired = cur.execute(
                    "INSERT INTO alert_fired (fire_key, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (fire_key[:255], self.now_ms()),
                ).rowcount
                if not fired:
                    return False
            for d in deliveries:
                cur.execute(f"INSERT INTO alert_outbox ({cols}) VALUES ({marks})", d.__dict__)
        return True

    @blocking
    def due_deliveries(self, now_ms: int, limit: int) -> list[Delivery]:
        rows = self._read(
            "SELECT * FROM alert_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id"
            " LIMIT ?",
            (now_ms, limit),
        )
        return [_delivery(r) for r in rows]

    @blocking
    def finish_delivery(self, d: Delivery) -> None:
        self._write(
            "UPDATE alert_outbox SET state = ?, attempts = ?, last_status = ?, last_error = ?, next_attempt_at = ?,"
            " delivered_at = ? WHERE id = ?",
            (d.state, d.attempts, d.last_status, d.last_error, d.next_attempt_at, d.delivered_at, d.id),
        )

    @blocking
    def list_deliveries(self, limit: int) -> list[Delivery]:
        return [_delivery(r) for r in self._read("SELECT * FROM alert_outbox ORDER BY id DESC LIMIT ?", (limit,))]

    @blocking
    def counters_near_caps(self, min_pct: int, since_ms: int) -> list[CounterUsage]:
        rows = self._read(
            "SELECT scope, cap, window_start, used, reserved, cap_limit FROM counters"
            " WHERE cap_limit IS NOT NULL AND cap_limit > 0 AND (used + reserved) * 100 >= cap_limit * ?"
            " AND (window_start >= ? OR window_start = 0)",
            (min_pct, since_ms),
        )
        return [CounterUsage(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    @blocking
    def keys_expired_between(self, since_ms: int, until_ms: int) -> list[KeyRecord]:
        rows = self._read(
            "SELECT * FROM vault_keys WHERE status = 'active' AND expires_at > ? AND expires_at <= ?",
            (since_ms, until_ms),
        )
        return [_key(r) for r in rows]

    @blocking
    def hourly_totals(self, since_ms: int, until_ms: int) -> list[tuple[str, str | None, int, int, int]]:
        hint = self.NO_INDEX_PREFIX
        rows = self._read(
            "SELECT key_id, MAX(label), (ts / 3600000) * 3600000 AS h, CAST(COALESCE(SUM(cost_usd), 0) AS BIGINT),"
            " SUM(CASE WHEN verdict IN ('allowed', 'outcome_unknown') THEN 1 ELSE 0 END)"
            f" FROM audit WHERE id >= ? AND id < ? AND {hint}key_id IS NOT NULL GROUP BY {hint}key_id, h",
            (audit_id_floor(since_ms), audit_id_floor(until_ms)),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @blocking
    def purge_fired(self, before_ms: int) -> int:
        with self._tx() as cur:
            return int(cur.execute("DELETE FROM alert_fired WHERE created_at < ?", (before_ms,)).rowcount)
