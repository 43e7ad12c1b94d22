"""What is known about one proxied request as it goes through the pipeline (proxy/pipeline.py)."""

from __future__ import annotations

from dataclasses import dataclass

from keybrake.store.base import AuditRow, KeyRecord, ReservedItem
from keybrake.store.ids import new_audit_id
from keybrake.vendors.base import Vendor


@dataclass
class RequestContext:
    """What is known about a request so far; denials render from it."""

    row: AuditRow
    started: float
    vendor: Vendor | None = None
    key: KeyRecord | None = None
    well_formed_token: bool = False
    upstream_ms: float = 0.0
    dedup_fingerprint: str | None = None  # this request opened a dedup window entry
    dedup_answer: bytes | None = None  # the sealed answer a duplicate will be replayed
    reserved: list[ReservedItem] | None = None  # what the committed reservation holds
    daily_counter: str | None = None
    sent: bool = False  # the request was handed to the upstream client (the vendor may have acted)
    settled: bool = False  # a settlement was submitted for the reservation
    id_fixed: bool = False  # a write that may have created the row was made: its id never changes

    def stamp(self, now_ms: int, *, fix: bool = False) -> None:
        """Mint the row's id and `ts` (ms) just before a write that may create it: ids follow write order
        (`audit tail -f` reads by id). A fixed id is kept; `fix`: keep this one (its write follows)."""
        if not self.id_fixed:
            self.row.id, self.row.ts = new_audit_id(now_ms), now_ms
        self.id_fixed = self.id_fixed or fix
