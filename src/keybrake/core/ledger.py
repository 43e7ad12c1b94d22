"""What vendor answers teach about vendor objects, and what one call counts for an object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LedgerEntry:
    """A vendor object's facts (amounts in the currency's minor unit).

    `amount_counted` is what Keybrake's own settlements counted against caps for the object so
    far (the sum of its `ObjectCount` rows) — never derived from the object's status, which
    changes outside Keybrake (a PaymentIntent confirmed in the browser). It is read, not written.
    """

    object_id: str
    kind: str
    customer: str | None
    account_context: str | None
    currency: str | None
    amount: int | None
    amount_counted: int = 0
    refunded: int | None = None  # a charge's amount_refunded
    captured: bool | None = None  # a charge's `captured`


@dataclass(frozen=True)
class ObjectCount:
    """What one forwarded call counts for a vendor object: money is counted once per object.

    `amount` (minor units, ≥ 0) is what this call's row holds in the counters for the object
    (its settled cost, or its kept estimate). `committed`, when the answer states what the
    object will finally move (a capture for less, a cancel), bounds the object's total: what
    earlier rows counted beyond it is released from their counters, latest first.
    """

    object_id: str
    amount: int
    committed: int | None = None
