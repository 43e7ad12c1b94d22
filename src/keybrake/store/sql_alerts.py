"""Queries (every SQL engine) for alert destinations, the delivery outbox and fire-once marks."""

from __future__ import annotations

import json

from keybrake.store.ids import audit_id_floor
from keybrake.store.records import AlertDestination, CounterUsage, Delivery, KeyRecord
from keybrake.store.reservations import counted_request_sql
from keybrake.store.sql_base import Cursor, Row, SQLBase, blocking, report
from keybrake.store.sql_rows import _key

_DELIVERY_COLS = tuple(Delivery.__dataclass_fields__)
# Claim order of due deliveries (lower first; others 1): docs/api.md, alerts.
PRIORITY = {
    "cap.hit": 0,
    "key.revoked": 0,
    "enforcement.unavailable": 0,
    "enforcement.recovered": 0,
    "secret.exposed": 2,
}


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
    def enqueue(
        self,
        deliveries: list[Delivery],
        fire_key: str | None,
        *,
        keep_until_ms: int | None = None,
        forever: bool = False,
    ) -> bool:
        cols = ", ".join(_DELIVERY_COLS)
        marks = ", ".join(":" + c for c in _DELIVERY_COLS)
        now = self.now_ms()
        with self._tx() as cur:
            if fire_key is not None:
                keep = None if forever else (now if keep_until_ms is None else keep_until_ms)
                fired = cur.execute(
                    "INSERT INTO alert_fired (fire_key, created_at, keep_until) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (fire_key[:255], now, keep),
                ).rowcount
                if not fired:
                    return False
            for d in deliveries:
                sql = f"INSERT INTO alert_outbox ({cols}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"
                cur.execute(sql, d.__dict__)
        return True

    def _db_now(self, cur: Cursor) -> int:
        """Now (Unix ms) on the database's clock (PostgreSQL), else this process's (SQLite, or a test clock)."""
        return self._txn_now(cur.execute(f"SELECT {self.NOW_SQL}").fetchone()[0])

    @blocking
    def claim_deliveries(self, destination_id: str, instance_id: str, lease_ms: int, limit: int) -> list[Delivery]:
        # PostgreSQL: the chosen rows are locked (FOR UPDATE SKIP LOCKED) in a CTE evaluated once,
        # so concurrent claims are disjoint. SQLite: one writer at a time makes the UPDATE atomic.
        due = "state = 'pending' AND next_attempt_at <= :now AND (lease_until IS NULL OR lease_until <= :now)"
        # Urgent events first: a flood of one kind (secret.exposed is raised by requests without a
        # key) never delays a cap.hit or key.revoked to the same destination behind it.
        rank = "CASE event_type " + " ".join(f"WHEN '{e}' THEN {r}" for e, r in PRIORITY.items()) + " ELSE 1 END"
        pick = (
            f"SELECT id FROM alert_outbox WHERE destination_id = :dest AND {due}"
            f" ORDER BY {rank}, next_attempt_at, id LIMIT :n"
        )
        if self.FOR_UPDATE:
            sql = (
                f"WITH picked AS MATERIALIZED ({pick}{self.FOR_UPDATE} SKIP LOCKED)"
                " UPDATE alert_outbox SET claimed_by = :me, lease_until = :until FROM picked"
                " WHERE alert_outbox.id = picked.id RETURNING alert_outbox.*"
            )
        else:
            sql = f"UPDATE alert_outbox SET claimed_by = :me, lease_until = :until WHERE id IN ({pick}) RETURNING *"
        with self._tx() as cur:
            now = self._db_now(cur)
            params = {"me": instance_id, "until": now + lease_ms, "now": now, "dest": destination_id, "n": limit}
            rows = cur.execute(sql, params).fetchall()
        return sorted(
            (_delivery(r) for r in rows), key=lambda d: (PRIORITY.get(d.event_type, 1), d.next_attempt_at, d.id)
        )

    @blocking
    def settle_delivery(
        self,
        delivery_id: str,
        instance_id: str,
        *,
        attempt_id: str,
        ok: bool,
        status: int | None,
        error: str | None,
        retry_in_ms: int,
        max_attempts: int,
    ) -> None:
        release = "claimed_by = CASE WHEN claimed_by = :me THEN NULL ELSE claimed_by END," \
            " lease_until = CASE WHEN claimed_by = :me THEN NULL ELSE lease_until END"  # fmt: skip
        once = "(attempt_ids IS NULL OR attempt_ids NOT LIKE :seen)"
        log = "attempt_ids = COALESCE(attempt_ids, '') || :att || ' '"
        with self._tx() as cur:
            now = self._db_now(cur)
            if ok:
                cur.execute(
                    "UPDATE alert_outbox SET state = 'delivered', attempts = attempts + 1, last_status = :status,"
                    " last_error = NULL, delivered_at = COALESCE(delivered_at, :now),"
                    f" {release}, {log} WHERE id = :id AND {once}",
                    {
                        "status": status,
                        "now": now,
                        "me": instance_id,
                        "id": delivery_id,
                        "att": attempt_id,
                        "seen": f"%{attempt_id}%",
                    },
                )
                return
            cur.execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, last_status = :status, last_error = :error,"
                " state = CASE WHEN state <> 'pending' THEN state WHEN attempts + 1 >= :max THEN 'failed'"
                " ELSE 'pending' END,"
                " next_attempt_at = CASE WHEN state = 'pending' THEN :next ELSE next_attempt_at END,"
                f" {release}, {log} WHERE id = :id AND {once}",
                {"status": status, "error": error, "max": max_attempts, "next": now + retry_in_ms,
                 "me": instance_id, "id": delivery_id, "att": attempt_id,
                     "seen": f"%{attempt_id}%"},
            )  # fmt: skip

    @blocking
    def fail_orphaned_deliveries(self, error: str) -> int:
        return self._write(
            "UPDATE alert_outbox SET state = 'failed', last_error = ?, claimed_by = NULL, lease_until = NULL"
            " WHERE state = 'pending' AND destination_id NOT IN (SELECT id FROM alert_destinations)",
            (error,),
        )

    @blocking
    def release_claims(self, instance_id: str) -> int:
        return self._write(
            "UPDATE alert_outbox SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = ? AND state = 'pending'",
            (instance_id,),
        )

    @blocking
    def list_deliveries(
        self, limit: int, *, state: str | None = None, before: tuple[int, str] | None = None
    ) -> list[Delivery]:
        """Newest first (created_at DESC, id DESC), at most `limit`; only `state` if given; only
        rows after the cursor `before` = (created_at ms, id) of the last row of the previous page."""
        where: list[str] = []
        params: list[object] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [before[0], before[0], before[1]]
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT * FROM alert_outbox{cond} ORDER BY created_at DESC, id DESC LIMIT ?"
        return [_delivery(r) for r in self._read(sql, (*params, limit))]

    @blocking
    def counters_near_caps(self, min_pct: int, since_ms: int, *, active_at_ms: int | None = None) -> list[CounterUsage]:
        active, params = "", [min_pct, since_ms]
        if active_at_ms is not None:
            # a key's counter only while the key is active: a revoked or expired key's caps are not news
            active = (
                " AND (substr(scope, 1, 4) != 'key:' OR EXISTS (SELECT 1 FROM vault_keys k"
                " WHERE k.id = substr(scope, 5) AND k.status = 'active' AND k.expires_at > ?))"
            )
            params.append(active_at_ms)
        rows = self._read(
            "SELECT scope, cap, window_start, used, reserved, cap_limit FROM counters"
            " WHERE cap_limit IS NOT NULL AND cap_limit > 0 AND (used + reserved) * 100 >= cap_limit * ?"
            " AND (window_start >= ? OR window_start = 0)" + active,
            tuple(params),
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
    def keys_revoked_between(self, since_ms: int, until_ms: int) -> list[KeyRecord]:
        rows = self._read(
            "SELECT * FROM vault_keys WHERE status = 'revoked' AND revoked_at > ? AND revoked_at <= ?",
            (since_ms, until_ms),
        )
        return [_key(r) for r in rows]

    @report
    def hourly_totals(self, since_ms: int, until_ms: int) -> list[tuple[str, str | None, int, int, int]]:
        """Per key and hour since..until (Unix ms): (key_id, label, hour start ms, µUSD, requests).

        A report (`@report`): it groups up to 25 hours of audit rows, so it runs on the report
        connections, off the event loop, under KEYBRAKE_REPORT_TIMEOUT_MS (EnforcementUnavailable past it)."""
        hint = self.NO_INDEX_PREFIX
        rows = self._read(
            "SELECT key_id, MAX(label), (ts / 3600000) * 3600000 AS h, CAST(COALESCE(SUM(cost_usd), 0) AS BIGINT),"
            f" SUM(CASE WHEN {counted_request_sql()} THEN 1 ELSE 0 END)"
            f" FROM audit WHERE id >= ? AND id < ? AND {hint}key_id IS NOT NULL GROUP BY {hint}key_id, h",
            (audit_id_floor(since_ms), audit_id_floor(until_ms)),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @blocking
    def purge_fired(self, before_ms: int) -> int:
        with self._tx() as cur:
            return int(
                cur.execute(
                    "DELETE FROM alert_fired WHERE keep_until IS NOT NULL AND keep_until < ?", (before_ms,)
                ).rowcount
            )
