"""The web console's sessions (docs/console.md): opened at sign-in, found by the hash of the
cookie on every console request, ended by sign-out. Expired rows are deleted when a session opens."""

from __future__ import annotations

from keybrake.store.records import AdminTokenRecord, ConsoleSession
from keybrake.store.sql_base import SQLBase, blocking

_KEPT_AFTER_EXPIRY_MS = 24 * 3_600_000  # an expired row stays a day (a sign-in page can say "expired")


class SessionQueries(SQLBase):
    @blocking
    def open_console_session(self, rec: ConsoleSession, session_hash: str) -> None:
        """Store a new session under `session_hash`; drops rows expired more than a day ago."""
        with self._tx() as cur:
            cur.execute("DELETE FROM console_sessions WHERE expires_at < ?", (rec.created_at - _KEPT_AFTER_EXPIRY_MS,))
            cur.execute(
                "INSERT INTO console_sessions (session_hash, id, admin_token_id, created_at, expires_at, ended_at)"
                " VALUES (?, ?, ?, ?, ?, NULL)",
                (session_hash, rec.id, rec.admin_token_id, rec.created_at, rec.expires_at),
            )

    @blocking
    def console_session(self, session_hash: str) -> tuple[ConsoleSession, AdminTokenRecord] | None:
        """The session stored under `session_hash` with its admin token (in any state), or None."""
        rows = self._read(
            "SELECT s.id, s.admin_token_id, s.created_at, s.expires_at, s.ended_at, t.scope, t.label,"
            " t.created_at AS token_created_at, t.revoked_at FROM console_sessions s"
            " JOIN admin_tokens t ON t.id = s.admin_token_id WHERE s.session_hash = ?",
            (session_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        session = ConsoleSession(r["id"], r["admin_token_id"], r["created_at"], r["expires_at"], r["ended_at"])
        token = AdminTokenRecord(r["admin_token_id"], r["scope"], r["label"], r["token_created_at"], r["revoked_at"])
        return session, token

    @blocking
    def end_console_session(self, session_hash: str) -> bool:
        """Sign-out: True when a live session was ended now."""
        n = self._write(
            "UPDATE console_sessions SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL",
            (self.now_ms(), session_hash),
        )
        return n == 1
