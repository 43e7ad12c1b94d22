"""Getting a reservation: the store's one reserve call, the waits around it, and the replay of a
duplicate. Part of the pipeline's shell (proxy/pipeline.py); the decisions it acts on are made
before it (proxy/decide.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from keybrake import deadline
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.crypto import Sealer
from keybrake.proxy.context import RequestContext
from keybrake.proxy.record import Recorder
from keybrake.proxy.render import ProxyResponse, open_replay
from keybrake.store.base import (
    CapSpec,
    DedupCheck,
    DedupHit,
    KeyRecord,
    KeyState,
    ObjectGuard,
    ReservationStore,
    ReserveResult,
    RetryCheck,
)

IN_FLIGHT_WAIT_S = 2.0  # a retry waits this long for the request it repeats to finish
DEDUP_WAIT_S = 10.0  # a duplicate waits this long for the first send's answer


class Reservations:
    """Reserve for the pipeline; `instance_id` names this replica on the in-flight row."""

    def __init__(self, store: ReservationStore, rec: Recorder, sealer: Sealer, instance_id: str) -> None:
        self.store = store
        self.rec = rec
        self.sealer = sealer
        self.instance_id = instance_id
        self._late: set[asyncio.Task[None]] = set()  # releases of reservations that committed too late

    async def reserve(
        self,
        ctx: RequestContext,
        key: KeyRecord,
        caps: list[CapSpec],
        retry: RetryCheck | None,
        dedup: DedupCheck | None,
        guard: ObjectGuard | None = None,
    ) -> ReserveResult:
        """Reserve; a retry of a request still in flight waits for it (up to IN_FLIGHT_WAIT_S).

        An SDK retries as soon as it has an answer, and the first request's row is completed just
        after its answer is sent (on another replica, perhaps): that short overlap must not turn a
        legitimate retry into a 409.
        """
        wait_until = time.monotonic() + IN_FLIGHT_WAIT_S
        pause = 0.01
        while True:
            # The row is first written by this reservation: its id is minted now, after every
            # lookup and wait before it (RequestContext.stamp), and kept once the write may have landed.
            ctx.stamp(self.store.now_ms())
            try:
                result = await self.store.reserve(
                    key.id, key.policy_version, caps, ctx.row, self.instance_id, retry, dedup, guard
                )
            except EnforcementUnavailable as exc:
                ctx.id_fixed = True  # it may have committed
                if exc.commit_unknown and exc.pending is not None:
                    self._release_when_done(ctx, dedup, exc.pending)  # past the deadline, still running
                elif exc.commit_unknown:
                    await self.rec.release_unanswered(ctx, dedup)
                raise
            # A busy object is not waited for here: the request was priced from facts the write in
            # flight may be changing, so it is refused (409, retryable) and priced afresh on retry.
            in_flight = result.retry_of is not None and result.retry_of.verdict == "in_flight"
            ctx.id_fixed = _wrote_row(result, in_flight)
            if not in_flight or time.monotonic() + pause > wait_until:
                return result
            await asyncio.sleep(pause)
            _extend(pause)  # waiting on the earlier request, not on the store
            pause = min(pause * 2, 0.2)

    async def duplicate(
        self, ctx: RequestContext, key: KeyRecord, fingerprint: str, hit: DedupHit
    ) -> ProxyResponse | None:
        """A send repeated inside the dedup window: replay the first answer, never send it again.

        A first send still in flight is waited for (up to DEDUP_WAIT_S); one whose outcome is
        unknown is refused, since it may have gone out. None: the first send was never made and
        its entry is gone, so this request may go as a new one.
        """
        wait_until = time.monotonic() + DEDUP_WAIT_S
        delay = 0.005
        current: DedupHit | None = hit
        while current is not None and current.state == "in_flight" and time.monotonic() < wait_until:
            await asyncio.sleep(delay)
            _extend(delay)  # waiting on the first send, not on the store
            delay = min(delay * 2, 0.1)
            current = await self.store.dedup_get(key.id, fingerprint)
        if current is None:
            return None
        ctx.row.dedup_of = current.row_id
        if current.state != "answered" or current.answer_enc is None:
            still = "is still in flight" if current.state == "in_flight" else "has no definite answer"
            raise Denial(
                "duplicate_outcome_unknown",
                f"Do not retry: this repeats {current.row_id} inside the key's dedup window, and that first send "
                f"{still}, so it may have gone out.",
            )
        status, headers, body = open_replay(self.sealer, key.id, fingerprint, current.answer_enc)
        headers = [(k, v) for k, v in headers if k.lower() != "server-timing"]  # sealed before it was dropped
        await self.rec.replayed(ctx, current.row_id, status)
        headers += self.rec.keybrake_headers(ctx)
        headers += [("x-keybrake-deduplicated", "true"), ("x-keybrake-deduplicated-of", current.row_id)]
        return ProxyResponse(status, headers, body)

    def _release_when_done(self, ctx: RequestContext, dedup: DedupCheck | None, pending: asyncio.Future[Any]) -> None:
        """A reservation still running when the deadline passed may commit later: once it ends,
        whatever it reserved is released (nothing was forwarded). Books stay exact."""

        async def release() -> None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await pending
            await self.rec.release_unanswered(ctx, dedup)

        task = asyncio.get_running_loop().create_task(release(), name="keybrake-late-release")
        self._late.add(task)
        task.add_done_callback(self._late.discard)


def _wrote_row(result: ReserveResult, retry_in_flight: bool) -> bool:
    """Whether the reservation wrote the request's in-flight row (it passed every check)."""
    return (
        result.state is KeyState.OK
        and result.cap_hit is None
        and result.dedup_of is None
        and result.object_busy is None
        and not retry_in_flight
    )


def _extend(seconds: float) -> None:
    """Time spent not waiting on the store does not count toward the request's deadline."""
    d = deadline.current()
    if d is not None:
        d.extend(seconds)
