"""The bounded wait in front of a store that runs its calls on worker threads (PostgreSQL).

At most `slots` calls run at once (one per worker thread and pooled connection), first come
first served. Proxied requests (calls with a deadline) may queue at most `max_waiters` deep,
each no longer than its deadline: one more, or a deadline passing in the queue, raises
`EnforcementUnavailable` at once (503, nothing forwarded). Bookkeeping without a deadline (a
denial's audit row, settlements, alerts, admin calls) is not refused for the queue's length — it
forwards nothing, and dropping it would lose rows — but waits no longer than its own bound.
So no request waits in front of the store past its deadline, and the requests waiting there are
bounded in number (docs/operations.md, "Fail closed").
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
        self._requests_waiting = 0

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    @property
    def busy(self) -> int:
        return self.slots - self._free

    async def enter(self, bound: float, *, request: bool = True) -> None:
        """Take a slot by `bound` (monotonic seconds). `request`: a proxied request's call, counted
        against `max_waiters`. Raises EnforcementUnavailable (queue full, or no slot by `bound`)."""
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        if request and self._requests_waiting >= self.max_waiters:
            raise EnforcementUnavailable(
                f"{self.what}: {self.slots} calls running and {self.max_waiters} waiting "
                "(KEYBRAKE_STORE_MAX_WAITERS); refused at once",
                transient=True,
            )
        remaining = bound - time.monotonic()
        if remaining <= 0:
            raise EnforcementUnavailable(
                f"{self.what}: the request's deadline passed before the store was reached", transient=True
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._requests_waiting += request
        try:
            await asyncio.wait_for(asyncio.shield(waiter), remaining)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # granted just as the wait ended: pass the slot on
            else:
                waiter.cancel()
            raise EnforcementUnavailable(
                f"{self.what}: no free connection in time ({self.slots} busy)", transient=True
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()
            else:
                waiter.cancel()
            raise
        finally:
            self._requests_waiting -= request
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
