"""SQL rows ↔ records, shared by the engine's hot path and its admin queries."""

from __future__ import annotations

import json
from typing import Any

from keybrake.store.records import AUDIT_FIELDS, AuditRow, BudgetRecord, CredentialRecord, KeyRecord
from keybrake.store.reservations import ReservedItem
from keybrake.store.sql_base import Row

_JSON_AUDIT = ("request_summary", "redacted_fields", "preflight_lookup", "metadata", "approval")
_AUDIT_COLS = (*AUDIT_FIELDS, "owner", "reservation", "fingerprint", "object_ref")
_INSERT_AUDIT = f"INSERT INTO audit ({', '.join(_AUDIT_COLS)}) VALUES ({', '.join(':' + c for c in _AUDIT_COLS)})"
# The row of a request that reserved nothing: written again with the same id (a retry after a
# lost connection whose COMMIT may have landed) it stays one row.
_INSERT_AUDIT_ONCE = _INSERT_AUDIT + " ON CONFLICT (id) DO NOTHING"
# Guarded reservation: inserts the window's counter or adds to it only while it stays within
# the limit. No row comes back when the guard refuses, and nothing is changed.


def _row_params(
    row: AuditRow,
    owner: str | None,
    reservation: list[ReservedItem] | None,
    fingerprint: str | None = None,
    object_ref: str | None = None,
) -> dict[str, Any]:
    params = {f: getattr(row, f) for f in AUDIT_FIELDS}
    for f, v in params.items():
        # Request text can carry NUL (a decoded %00); PostgreSQL text cannot hold it, SQLite can.
        # Both engines store U+FFFD instead, so an audit row is never lost to it.
        if type(v) is str and "\x00" in v:
            params[f] = v.replace("\x00", "\ufffd")
    for f in _JSON_AUDIT:
        if params[f] is not None:
            params[f] = json.dumps(params[f], separators=(",", ":"), sort_keys=True)
    params["owner"] = owner
    params["fingerprint"] = fingerprint
    params["object_ref"] = object_ref
    params["reservation"] = json.dumps([i.as_json() for i in reservation]) if reservation is not None else None
    return params


def _audit_dict(r: Row) -> dict[str, Any]:
    out = {f: r[f] for f in AUDIT_FIELDS}
    for f in _JSON_AUDIT:
        if out[f] is not None:
            out[f] = json.loads(out[f])
    return out


def _key(r: Row) -> KeyRecord:
    return KeyRecord(
        id=r["id"],
        vendor=r["vendor"],
        credential=r["credential"],
        label=r["label"],
        metadata=json.loads(r["metadata"]),
        policy=json.loads(r["policy"]),
        policy_version=r["policy_version"],
        status=r["status"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        revoke_reason=r["revoke_reason"],
        issued_by=r["issued_by"],
        credential_gen=r["credential_gen"],
    )


def _cred(r: Row) -> CredentialRecord:
    return CredentialRecord(
        name=r["name"],
        vendor=r["vendor"],
        secret_enc=bytes(r["secret_enc"]),
        secret_hint=r["secret_hint"],
        base_url=r["base_url"],
        livemode=None if r["livemode"] is None else bool(r["livemode"]),
        created_at=r["created_at"],
        rotated_at=r["rotated_at"],
        generation=r["generation"],
    )


BUDGET_COLS = tuple(BudgetRecord.__dataclass_fields__)


def _budget(r: Row) -> BudgetRecord:
    return BudgetRecord(**{c: r[c] for c in BUDGET_COLS})


def prefix_match(column: str, prefix: str) -> tuple[str, list[Any]]:
    """SQL (two placeholders) true when `column` starts with `prefix`, exactly as `str.startswith`.

    The one matching rule of every filter (docs/api.md, filters): case-sensitive, code point by
    code point, no wildcard characters (`%`, `_` and `\\` are themselves), the empty prefix
    matches every non-NULL value. `substr` and `length` count characters (code points) on both
    engines and `=` compares them exactly (SQLite's BINARY collation; PostgreSQL's deterministic
    collations compare equal only when the bytes are equal), unlike `LIKE`, which folds ASCII
    case on SQLite and treats `%`/`_` as wildcards.
    """
    return f"substr({column}, 1, CAST(? AS INTEGER)) = ?", [len(prefix), prefix]
