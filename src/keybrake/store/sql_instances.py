"""Meta values and process leases, written once for every SQL engine: the pepper and canary
(`kb_meta`), each process's heartbeat (`instances`), and recovery of the rows dead processes
left in flight (docs/scale-out.md).
"""

from __future__ import annotations

import os

from keybrake.store.ids import audit_id_floor
from keybrake.store.sql_approvals import cancel_orphaned_approvals, release_orphaned_holds
from keybrake.store.sql_base import SQLBase, blocking


class InstanceQueries(SQLBase):
    """Meta, leases and recovery (see `roles.LifecycleStore` and `roles.InstanceStore`)."""

    @blocking
    def get_meta(self, name: str) -> bytes | None:
        rows = self._read("SELECT value FROM kb_meta WHERE name = ?", (name,))
        return bytes(rows[0]["value"]) if rows else None

    @blocking
    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        with self._tx() as cur:
            cur.execute("INSERT INTO kb_meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, value))
            return bytes(cur.execute("SELECT value FROM kb_meta WHERE name = ?", (name,)).fetchone()[0])

    @blocking
    def register_instance(self, instance_id: str, hostname: str, pid: int) -> None:
        self._heartbeat(instance_id, hostname, pid)

    @blocking
    def heartbeat(self, instance_id: str, hostname: str, pid: int) -> None:
        """Renew this process's lease; re-registers it if another replica took it for dead."""
        self._heartbeat(instance_id, hostname, pid)

    @blocking
    def probe_write(self) -> None:
        self._write("UPDATE counters SET used = used WHERE scope = ''")

    @blocking
    def deregister_instance(self, instance_id: str) -> None:
        self._write("DELETE FROM instances WHERE id = ?", (instance_id,))

    def _heartbeat(self, instance_id: str, hostname: str, pid: int) -> None:
        now = self.now_ms()
        self._write(
            "INSERT INTO instances (id, hostname, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (instance_id, hostname, pid, now, now),
        )

    @blocking
    def recover_in_flight(
        self, instance_id: str, hostname: str, stale_ms: int, max_flight_ms: int | None = None
    ) -> int:
        """Mark rows owned by dead processes `outcome_unknown`, keeping their reservations; their
        calls still held for approval (never sent) are released instead. Returns how many rows.

        A process is dead when its lease (heartbeat) is older than `stale_ms`, or at once when it
        ran on this host and its pid is gone. Any replica may do this for any other. A row in
        flight longer than `max_flight_ms` (past any upstream timeout: its settlement was lost)
        is marked too, whoever owns it; if its settlement does land later, it still settles it.
        """
        now = self.now_ms()
        dead: list[str] = []
        for r in self._read("SELECT id, hostname, pid, heartbeat_at FROM instances WHERE id != ?", (instance_id,)):
            if r["heartbeat_at"] < now - stale_ms or (r["hostname"] == hostname and not _pid_alive(r["pid"])):
                dead.append(r["id"])
        with self._tx() as cur:
            for d in dead:
                cur.execute("DELETE FROM instances WHERE id = ?", (d,))
            # One statement, so the owners it sees and the rows it marks are one snapshot: a
            # process registers before it writes its first in-flight row.
            # Calls held for approval and never approved (so never sent), their holder gone:
            # released, not kept.
            floor = audit_id_floor(now - max_flight_ms) if max_flight_ms is not None else ""
            released = release_orphaned_holds(cur, floor)
            # A call still held for a person (its approval pending) was never sent: however long it
            # has been in flight (a replica with a shorter KEYBRAKE_APPROVAL_MAX_WAIT), it is never
            # taken for one that may have moved money. Its live holder ends it.
            orphaned = cur.execute(
                "UPDATE audit SET verdict = 'outcome_unknown', reason = ?, cost_source = 'estimate',"
                " cost_usd = reserved_usd WHERE verdict = 'in_flight' AND reservation IS NOT NULL"
                " AND (NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = audit.owner) OR (id < ? AND NOT EXISTS"
                " (SELECT 1 FROM approvals a WHERE a.state = 'pending' AND a.audit_id = audit.id))) RETURNING id",
                (
                    "Keybrake stopped while this request was in flight; the vendor may have acted. "
                    "Its reservation is kept until reconciled.",
                    floor,
                ),
            ).fetchall()
            for r in orphaned:
                cur.execute("UPDATE dedup SET state = 'unknown' WHERE row_id = ? AND state = 'in_flight'", (r[0],))
            cancel_orphaned_approvals(cur, now)
        return len(orphaned) + released


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
