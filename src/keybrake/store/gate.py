"""The bounded wait in front of a store that runs its calls on worker threads (PostgreSQL).

At most `slots` calls run at once (one per worker thread and pooled connection); at most
`max_waiters` more wait for a slot, each no longer than its own bound (the request's deadline,
or the pool timeout for work without one). A call that finds the queue full, or whose bound
passes while it waits, raises `EnforcementUnavailable` at once (503, nothing forwarded): the
queue in front of the store never grows without bound, and nothing waits in it past its
deadline (docs/operations.md, "Fail closed").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from keybrake.errors import EnforcementUnavailable


class StoreGate:
    def __init__(self, slots: int, max_waiters: int, what: str) -> None:
        """`slots` ≥ 1 concurrent calls; `max_waiters` ≥ 0 queued; `what` names the store in errors."""
        self.slots = slots
        self.max_waiters = max_waiters
        self.what = what
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    @property
    def busy(self) -> int:
        return self.slots - self._free

    async def enter(self, bound: float) -> None:
        """Take a slot by `bound` (monotonic seconds). Raises EnforcementUnavailable (queue full,
        or no slot before `bound`)."""
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        if self.waiting >= self.max_waiters:
            raise EnforcementUnavailable(
                f"{self.what}: {self.slots} calls running and {self.max_waiters} waiting "
                "(KEYBRAKE_STORE_MAX_WAITERS); refused at once"
            )
        remaining = bound - time.monotonic()
        if remaining <= 0:
            raise EnforcementUnavailable(f"{self.what}: the request's deadline passed before the store was reached")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), remaining)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # granted just as the wait ended: pass the slot on
            else:
                waiter.cancel()
            raise EnforcementUnavailable(
                f"{self.what}: no free connection within the request's deadline ({self.slots} busy)"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()
            else:
                waiter.cancel()
            raise
        finally:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def leave(self) -> None:
        """Give a slot back: to the first live waiter, else to the free count."""
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return
        self._free += 1
