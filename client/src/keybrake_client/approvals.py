"""`kb.approvals`: calls held for a person's decision (docs/approvals.md), sync and async.

A decision (`approve`, `deny`) is sent once, never retried: after a lost answer, `get` the
approval to learn whether it was taken. A decision that loses (already decided, the hold
ended) raises `KeybrakeAPIError` with status 409 and a message naming the approval's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from keybrake_client import models as m
from keybrake_client import ops

if TYPE_CHECKING:
    from keybrake_client.aio import AsyncKeybrake
    from keybrake_client.client import Keybrake

Usd = Decimal | int | str


class Approvals:
    """`Keybrake.approvals`."""

    def __init__(self, kb: Keybrake) -> None:
        self._kb = kb

    def list(
        self,
        *,
        state: str | None = None,
        key_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> m.Page[m.Approval]:
        """One page of approvals, newest first. `state`: "pending" | "approved" | "denied" |
        "expired" | "cancelled"."""
        return self._kb.call(ops.list_approvals(state, key_id, limit, cursor))

    def iterate(
        self, *, state: str | None = None, key_id: str | None = None, page_size: int = 100
    ) -> Iterator[m.Approval]:
        """Every approval matching the filters, newest first, all pages of `page_size` (1-1000)."""
        cursor = None
        while True:
            page = self.list(state=state, key_id=key_id, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get(self, approval_id: str) -> m.Approval:
        """One approval (`GET /v1/approvals/{id}`)."""
        return self._kb.call(ops.get_approval(approval_id))

    def approve(self, approval_id: str, reason: str | None = None, grant_run_usd: Usd | None = None) -> m.Approval:
        """Let the held call go; `grant_run_usd` also lets the rest of its run go without asking
        while what it reserves fits. Sent once (never retried)."""
        return self._kb.call(ops.approve_approval(approval_id, reason, grant_run_usd))

    def deny(self, approval_id: str, reason: str) -> m.Approval:
        """Refuse the held call (the agent gets `approval_denied` with `reason`). Sent once."""
        return self._kb.call(ops.deny_approval(approval_id, reason))


class AsyncApprovals:
    """`AsyncKeybrake.approvals`: the methods of `Approvals`, awaited."""

    def __init__(self, kb: AsyncKeybrake) -> None:
        self._kb = kb

    async def list(
        self,
        *,
        state: str | None = None,
        key_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> m.Page[m.Approval]:
        """One page of approvals, newest first (see `Approvals.list`)."""
        return await self._kb.call(ops.list_approvals(state, key_id, limit, cursor))

    async def iterate(
        self, *, state: str | None = None, key_id: str | None = None, page_size: int = 100
    ) -> AsyncIterator[m.Approval]:
        """Every approval matching the filters, newest first, all pages of `page_size` (1-1000)."""
        cursor = None
        while True:
            page = await self.list(state=state, key_id=key_id, limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get(self, approval_id: str) -> m.Approval:
        """One approval (`GET /v1/approvals/{id}`)."""
        return await self._kb.call(ops.get_approval(approval_id))

    async def approve(
        self, approval_id: str, reason: str | None = None, grant_run_usd: Usd | None = None
    ) -> m.Approval:
        """Let the held call go (see `Approvals.approve`). Sent once (never retried)."""
        return await self._kb.call(ops.approve_approval(approval_id, reason, grant_run_usd))

    async def deny(self, approval_id: str, reason: str) -> m.Approval:
        """Refuse the held call. Sent once."""
        return await self._kb.call(ops.deny_approval(approval_id, reason))
