"""What the fake Stripe holds: its objects by id, idempotency records, and the lookups and
paging every endpoint shares."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.base import FakeServer
from tests.fakes.stripe_server.params import (
    DEFAULT_SECRET,
    Answer,
    Params,
    _int,
    _list,
    _no_such,
    _public,
    _str,
)


class StripeState(FakeServer):
    """The fake's objects (dicts in Stripe's shapes, by id) and what every endpoint shares."""

    def __init__(self, *, secret: str = DEFAULT_SECRET) -> None:
        super().__init__()
        self.secret = secret
        # objects, by id
        self.customers: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        # idempotency key -> (fingerprint, status, body, original request id)
        self.idempotency: dict[str, tuple[tuple[Any, ...], int, bytes, str]] = {}
        self.webhook_endpoints: dict[str, dict[str, Any]] = {}
        self._in_flight: set[str] = set()
        self._counter = 0

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _now() -> int:
        return int(time.time())

    @staticmethod
    def _page(url: str, objects: list[dict[str, Any]], p: Params) -> Answer:
        """Newest first, with loose ``limit`` / ``starting_after`` / ``ending_before``."""
        items = sorted(objects, key=lambda o: (o["created"], o["_seq"]), reverse=True)
        after, before = _str(p, "starting_after"), _str(p, "ending_before")
        ids = [o["id"] for o in items]
        if after in ids:
            items = items[ids.index(after) + 1 :]
        elif before in ids:
            items = items[: ids.index(before)]
        limit = _int(p, "limit") or 10
        limit = max(1, min(limit, 100))
        page = items[:limit]
        return 200, _list(url, [_public(o) for o in page], has_more=len(items) > limit)

    def _seq(self) -> int:
        self._counter += 1
        return self._counter

    def _charge(self, ch_id: str, param: str = "id") -> dict[str, Any]:
        if ch_id not in self.charges:
            raise _no_such("charge", ch_id, param)
        return self.charges[ch_id]

    def _payment_intent(self, pi_id: str, param: str = "intent") -> dict[str, Any]:
        if pi_id not in self.payment_intents:
            raise _no_such("payment_intent", pi_id, param)
        return self.payment_intents[pi_id]
