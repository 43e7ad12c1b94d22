"""The bounded wait in front of a store that runs its calls on worker threads (PostgreSQL).

At most `slots` calls run at once (one per worker thread and pooled connection). A freed slot
goes to the first waiter of any class but `denial`, first come first served; a `denial` waiter gets
one only when no other waits, so a flood of denials never sits in front of a key's reservation or
its books. Every waiter belongs to a class (`keybrake.deadline`), each capped on its own:

- `request` (a proxied request's call with a deadline): at most `max_waiters` waiting, each no
  longer than its deadline; one more, or a deadline passing in the queue, raises
  `EnforcementUnavailable` at once (503, nothing forwarded);
- `lookup` (an uncached key lookup, `/_keybrake/self`, `/readyz`: nobody authenticated yet): at
  most `side_cap(max_waiters)` waiting, so a flood of unknown keys never takes the places of keys
  already known;
- `denial` (a final denial's audit row): at most `max_waiters` waiting, apart from the requests'
  places (a legitimate burst of denials keeps its rows); a row refused here, or still waiting at
  its bound, is shed (`EnforcementUnavailable(shed=True)`), counted and logged by the caller;
- `bookkeeping` (settlements, alerts, admin calls): not refused for the queue's length — it
  forwards nothing, and dropping it would lose books — but waits no longer than its own bound.

So no request waits in front of the store past its deadline, and every unauthenticated or
denial-driven queue entry is bounded in number (docs/operations.md, "Fail closed").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from keybrake.core.errors import EnforcementUnavailable
from keybrake.deadline import BOOKKEEPING, DENIAL, LOOKUP, REQUEST


def side_cap(max_waiters: int) -> int:
    """Waiters allowed in the `lookup` class: a quarter of the requests' (at least 1)."""
    return max(1, max_waiters // 4)


class StoreGate:
    def __init__(self, slots: int, max_waiters: int, what: str) -> None:
        """`slots` ≥ 1 concurrent calls; `max_waiters` ≥ 0 queued; `what` names the store in errors."""
        self.slots = slots
        self.max_waiters = max_waiters
        self.what = what
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()  # every class but denial, in order
        self._denials: deque[asyncio.Future[None]] = deque()  # served only when _waiters is empty
        self._caps = {REQUEST: max_waiters, LOOKUP: side_cap(max_waiters), DENIAL: max_waiters}
        self._by_class = {REQUEST: 0, LOOKUP: 0, DENIAL: 0, BOOKKEEPING: 0}

    @property
    def waiting(self) -> int:
        """Calls queued for a slot (a waiter leaves the queue when it gets one or gives up)."""
        return len(self._waiters) + len(self._denials)

    @property
    def busy(self) -> int:
        """Slots in use."""
        return self.slots - self._free

    async def enter(self, bound: float, *, request: bool = True, kind: str | None = None) -> None:
        """Take a slot by `bound` (monotonic seconds). `kind`: the waiter's class (default
        `request` if `request` else `bookkeeping`), counted against that class's cap.
        Raises EnforcementUnavailable (its class full, or no slot by `bound`; `shed` for a denial row)."""
        kind = kind or (REQUEST if request else BOOKKEEPING)
        if self._free > 0 and not self._waiters and not self._denials:
            self._free -= 1
            return
        cap = self._caps.get(kind)
        if cap is not None and self._by_class[kind] >= cap:
            raise EnforcementUnavailable(
                f"{self.what}: {self.slots} calls running and {cap} {kind} calls waiting "
                "(KEYBRAKE_STORE_MAX_WAITERS); refused at once",
                transient=True,
                shed=kind == DENIAL,
            )
        remaining = bound - time.monotonic()
        if remaining <= 0:
            raise EnforcementUnavailable(
                f"{self.what}: the request's deadline passed before the store was reached", transient=True
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._denials if kind == DENIAL else self._waiters
        queue.append(waiter)
        self._by_class[kind] += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter), remaining)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # granted just as the wait ended: pass the slot on
            else:
                waiter.cancel()
            raise EnforcementUnavailable(
                f"{self.what}: no free connection in time ({self.slots} busy)", transient=True, shed=kind == DENIAL
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()
            else:
                waiter.cancel()
            raise
        finally:
            self._by_class[kind] -= 1
            try:
                queue.remove(waiter)
            except ValueError:
                pass

    def leave(self) -> None:
        """Give a slot back: to the first live waiter (a denial row's only when no other waits),
        else to the free count."""
        for queue in (self._waiters, self._denials):
            while queue:
                w = queue.popleft()
                if not w.done():
                    w.set_result(None)
                    return
        self._free += 1
