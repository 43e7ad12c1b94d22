"""Holding a call for a person's decision (docs/approvals.md). Part of the pipeline's shell.

A call that needs approval (`core.approvals.approval_need`) has passed every other check and
holds its reservation against every cap. It is then held: the agent's request stays open while
this module writes the pending approval, asks the alert destinations (`approval.requested`) and
watches for the decision, which may arrive at any replica (the store is polled every `POLL_S`;
a decision made on this replica wakes the holder at once). It ends in exactly one way:

- approved (by a person, or by a grant for the rest of the run) → forwarded as it was received;
- denied → `approval_denied`; not decided in time → `approval_timeout`; the key revoked or
  expired meanwhile → `approval_denied`; this replica stopping → `approval_timeout` (ask again);
- the agent hung up → nothing is sent (no one to answer).

Every ending but approval releases the reservation (the caller settles it as nothing sent).
While the store cannot be read the call stays held; at its end it is refused (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from keybrake import deadline
from keybrake.config import Settings
from keybrake.core.approvals import ApprovalNeed, approval_need
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.core.money import human_usd
from keybrake.core.policy import Policy
from keybrake.logs import event
from keybrake.proxy.context import RequestContext
from keybrake.proxy.decide import Plan
from keybrake.proxy.forward import FORWARD_MARGIN_S
from keybrake.proxy.metrics import ProxyMetrics
from keybrake.proxy.render import ProxyResponse
from keybrake.store.base import (
    ApprovalRecord,
    ApprovalStore,
    KeyRecord,
    ReservedItem,
    ReserveResult,
    Settlement,
)
from keybrake.store.ids import new_audit_id
from keybrake.store.sql_approvals import ABANDONED, audit_approval

log = logging.getLogger("keybrake.proxy")

THRESHOLDS_TTL_S = 1.0  # budgets' approval_above_usd are read again after this long
POLL_S = 0.25  # how often a holder reads the decision from the store (decisions on other replicas)
# Set by the ASGI adapter for each proxied request: a coroutine that returns once the client has
# disconnected (ASGI `http.disconnect`). A held call watches it: a client that hangs up is never sent.
CLIENT_GONE: ContextVar[Callable[[], Awaitable[Any]] | None] = ContextVar("keybrake_client_gone", default=None)


class ApprovalSink(Protocol):
    """Where a held call is announced (`approval.requested`); the call only schedules work."""

    def approval_requested(self, rec: ApprovalRecord) -> None: ...


class ClientGone(Exception):
    """The agent disconnected while its call was held: nothing was sent, there is no one to answer."""


class Approvals:
    """Decides whether a reserved call waits for a person, and holds it until it is decided.

    `wake(approval_id)` is called by the admin API of this replica after a decision, so the holder
    need not wait for its next poll; `stop()` ends every hold at shutdown.
    """

    def __init__(
        self,
        store: ApprovalStore,
        settings: Settings,
        instance_id: str,
        sink: ApprovalSink | None = None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.store, self.settings, self.instance_id, self.sink = store, settings, instance_id, sink
        self.metrics = metrics
        self._events: dict[str, asyncio.Event] = {}
        self._threshold_cache: dict[tuple[str, ...], tuple[float, dict[str, int]]] = {}
        self._stopping = False
        if metrics is not None:
            metrics.approvals_held.set_function(lambda: len(self._events))

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.approvals.labels(outcome).inc()

    def wake(self, approval_id: str) -> None:
        ev = self._events.get(approval_id)
        if ev is not None:
            ev.set()

    def stop(self) -> None:
        """The server is stopping: every held call ends now (released; the agent may ask again)."""
        self._stopping = True
        for ev in list(self._events.values()):
            ev.set()

    async def need(
        self, policy: Policy, method: str, path: tuple[str, ...], estimate_usd: int, items: list[ReservedItem],
        *, unbounded: bool = False,
    ) -> ApprovalNeed | None:  # fmt: skip
        """Whether the reserved call (its reservation `items`) needs approval; `unbounded`: its
        estimate is no upper bound (unpriceable). The budgets covering the key are read only when
        one may set a threshold the call is above (µUSD > 0, or unbounded)."""
        thresholds: dict[str, int] = {}
        if estimate_usd > 0 or unbounded:
            budgets = tuple(sorted({it.counter_scope[7:] for it in items if it.counter_scope.startswith("budget:")}))
            if budgets:
                thresholds = await self._thresholds(budgets)
        return approval_need(
            policy, thresholds, method, path, estimate_usd, self.settings.approval_max_wait_s, unbounded=unbounded
        )

    async def _thresholds(self, budgets: tuple[str, ...]) -> dict[str, int]:
        """The budgets' `approval_above_usd`, read at most once per THRESHOLDS_TTL_S per set of
        budgets: a change applies within that time (docs/approvals.md), and a priced call under a
        budget does not pay a store round trip for a setting that rarely changes."""
        now = time.monotonic()
        cached = self._threshold_cache.get(budgets)
        if cached is not None and now - cached[0] < THRESHOLDS_TTL_S:
            return cached[1]
        got = await self.store.budget_approval_thresholds(list(budgets))
        if len(self._threshold_cache) >= 1024:
            self._threshold_cache.clear()
        self._threshold_cache[budgets] = (now, got)
        return got

    async def hold(
        self,
        key: KeyRecord,
        audit_id: str,
        need: ApprovalNeed,
        endpoint: str,
        method: str,
        amount_usd: int,
        summary: dict[str, Any] | None,
        *,
        grantable: bool = True,
    ) -> dict[str, Any]:
        """Hold the call until it is decided. Returns the audit row's `approval` (who decided, how
        long it waited) when it may go; raises the Denial that ends it otherwise (the caller
        releases the reservation), or ClientGone."""
        started = time.monotonic()
        run_id = key.metadata.get("agent_run_id")
        now = self.store.now_ms()
        rec = ApprovalRecord(
            id="apr_" + new_audit_id(now)[4:],
            audit_id=audit_id,
            key_id=key.id,
            label=key.label,
            agent_run_id=str(run_id) if run_id else None,
            vendor=key.vendor,
            method=method,
            endpoint=endpoint,
            amount_usd=amount_usd,
            summary=summary,
            reasons=need.reasons,
            state="pending",
            created_at=now,
            expires_at=now + need.wait_s * 1000,
            owner=self.instance_id,
        )
        # A run's grant is money: it covers a call that reserves a bounded amount above zero, never
        # one that reserves nothing or may move any amount (those are asked every time).
        granted = await self.store.use_grant(rec.run_scope, amount_usd) if grantable and amount_usd > 0 else None
        if granted is not None:
            note: dict[str, Any] = {"state": "approved", "decided_by": f"grant:{granted}", "waited_ms": 0}
            note["reasons"] = list(need.reasons)
            await self.store.note_approval(audit_id, note)
            self._count("granted")
            return note
        if self._stopping:
            raise _ended("approval_timeout", "Keybrake is stopping", rec, ASK_AGAIN, "cancelled")
        ev = self._events[rec.id] = asyncio.Event()
        try:
            if not await self.store.hold_approval(rec, self.settings.approval_max_pending):
                self._count("queue_full")
                raise Denial(
                    "approval_queue_full",
                    f"This call needs a person's approval, but {key.id} already has "
                    f"{self.settings.approval_max_pending} calls waiting (KEYBRAKE_APPROVAL_MAX_PENDING; a call "
                    "whose agent hung up while it waited keeps its place until its hold would have ended); it "
                    "was not held and nothing was sent. Ask again once those are decided.",
                )
            event(log, "call held for approval", approval_id=rec.id, key_id=key.id, audit_id=audit_id,
                  amount_usd=human_usd(amount_usd), expires_in_s=need.wait_s)  # fmt: skip
            if self.sink is not None:
                self.sink.approval_requested(rec)
            try:
                final = await self._watch(rec, ev, started, key.policy_version)
            except Denial as ended:
                self._count(ended.extra_headers.get(STATE_HEADER, "cancelled"))
                raise
            except ClientGone:
                self._count("cancelled")
                raise
            self._count("approved")
        finally:
            self._events.pop(rec.id, None)
        approval = audit_approval(final, waited_ms=round((time.monotonic() - started) * 1000))
        with contextlib.suppress(EnforcementUnavailable):
            await self.store.note_approval(audit_id, approval)
        return approval

    async def _watch(
        self, rec: ApprovalRecord, ev: asyncio.Event, started: float, policy_version: int
    ) -> ApprovalRecord:
        """Poll until decided; returns the approved record, or raises what ended the hold."""
        gone = _client_gone()
        try:
            while True:
                current = await self._read(rec, started, policy_version)
                if current is not None and current.state == "approved":
                    return current
                if current is not None and current.state == "denied":
                    with contextlib.suppress(EnforcementUnavailable):
                        waited_ms = round((time.monotonic() - started) * 1000)
                        await self.store.note_approval(rec.audit_id, audit_approval(current, waited_ms=waited_ms))
                    why = f" ({current.reason})" if current.reason else ""
                    raise _ended("approval_denied", f"a person denied it{why}", current, DECIDED, "denied")
                if current is not None and current.state in ("expired", "cancelled"):
                    # Ended elsewhere (another replica's recovery took this replica for dead).
                    raise _ended(
                        "approval_timeout", current.reason or "it was cancelled", rec, ASK_AGAIN, current.state
                    )
                left = rec.expires_at - self.store.now_ms()
                if self._stopping:
                    await self._end(rec, "cancelled", "Keybrake stopped while the call waited", started)
                    raise _ended("approval_timeout", "Keybrake stopped while it waited", rec, ASK_AGAIN, "cancelled")
                if gone is not None and gone.done():
                    await self._end(rec, "cancelled", ABANDONED, started)
                    raise ClientGone()
                if left <= 0:
                    ended = await self._end(rec, "expired", "no one decided in time", started)
                    if ended is not None and ended.state == "approved":  # just before the hold ended
                        again = await self._read(rec, started, policy_version)  # the key's checks too
                        if again is not None and again.state == "approved":
                            return again
                    raise _ended("approval_timeout", f"no one decided within {_span(rec)}", rec, ASK_AGAIN, "expired")
                ev.clear()
                waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(ev.wait())]
                if gone is not None:
                    waits.append(gone)
                _, pending = await asyncio.wait(
                    waits, timeout=min(POLL_S, left / 1000), return_when=asyncio.FIRST_COMPLETED
                )
                for f in pending:
                    if f is not gone:
                        f.cancel()
        finally:
            if gone is not None:
                gone.cancel()

    async def _read(self, rec: ApprovalRecord, started: float, policy_version: int) -> ApprovalRecord | None:
        """The approval as stored now; raises the denial when its key was revoked or expired
        (the hold is ended as cancelled). None while the store cannot be read (still held)."""
        deadline.start(self.settings.reserve_deadline_ms / 1000)  # each read bounded as a request's
        try:
            current, key = await self.store.approval_watch(rec.id)
        except EnforcementUnavailable:
            return None
        if current is None or current.state not in ("pending", "approved"):
            return current
        # Checked as on every request, even if approved in the same moment: a key revoked or expired
        # while its call waited is refused; a policy changed meanwhile may no longer admit the call.
        if key is None or key.status != "active" or key.expires_at <= self.store.now_ms():
            why = "the key was revoked" if key is None or key.status == "revoked" else "the key expired"
            await self._end(rec, "cancelled", f"{why} while the call waited", started)
            raise _ended("approval_denied", f"{why} while it waited", rec, KEY_GONE, "cancelled")
        if key.policy_version != policy_version:
            await self._end(rec, "cancelled", "the key's policy changed while the call waited", started)
            raise _ended("approval_timeout", "the key's policy changed while it waited", rec, RECHECK, "cancelled")
        return current

    async def _end(self, rec: ApprovalRecord, state: str, reason: str, started: float) -> ApprovalRecord | None:
        waited_ms = round((time.monotonic() - started) * 1000)
        deadline.start(self.settings.reserve_deadline_ms / 1000)
        try:
            return await self.store.end_approval(rec.id, state, "keybrake", reason, waited_ms)
        except EnforcementUnavailable:
            return None  # still pending in the store; past its expiry no one can approve it


def _client_gone() -> asyncio.Future[Any] | None:
    watch = CLIENT_GONE.get()
    return asyncio.ensure_future(watch()) if watch is not None else None


def _span(rec: ApprovalRecord) -> str:
    return f"{(rec.expires_at - rec.created_at) // 1000}s"


ASK_AGAIN = "Asking again (the same request) holds it for approval again."
DECIDED = "Do not ask again: a person decided."
KEY_GONE = "Do not retry: the key can no longer be used."
RECHECK = "Asking again checks it against the key's current policy (and holds it again if it still needs approval)."


STATE_HEADER = "x-keybrake-approval-state"


def _ended(code: str, what: str, rec: ApprovalRecord, advice: str, state: str) -> Denial:
    """The refusal a hold ends in; `advice` says whether asking again can help (ASK_AGAIN …),
    `state` how the approval ended (denied, expired, cancelled), also told in a header."""
    return Denial(
        code,
        f"This call waited for a person's approval ({rec.id}) and was not sent: {what}. {advice}",
        detail=f"approval {rec.id}",
        extra_headers={"x-keybrake-approval-id": rec.id, STATE_HEADER: state},
    )


Refuse = Callable[[RequestContext, Settlement, Denial], Awaitable[ProxyResponse]]


async def approve_or_refuse(
    approvals: Approvals, ctx: RequestContext, key: KeyRecord, policy: Policy, plan: Plan, result: ReserveResult,
    refuse: Refuse,
) -> ProxyResponse | None:  # fmt: skip
    """After the reservation: None when the call may be forwarded now (it needs no approval, or it
    was approved while held); else the answer of a hold that ended otherwise, its reservation
    released through `refuse` (the forwarder's). A retry the vendor replays (`retry_of`) was
    decided with the request it repeats and is not held again."""
    if result.retry_of is not None:
        return None
    vreq = plan.vreq
    try:
        need = await approvals.need(
            policy, vreq.method, vreq.path, plan.estimate.amount, result.items,
            unbounded=plan.estimate.pricing == "unpriceable",
        )  # fmt: skip
    except EnforcementUnavailable as exc:
        return await refuse(ctx, _released("denied_enforcement_unavailable"), _unsure(exc))
    if need is None:
        return None
    d = deadline.current()
    left = d.remaining() if d is not None else None
    if left is not None and left < FORWARD_MARGIN_S:
        return None  # reserved too late to be sent at all: the forwarder refuses it (TOO_LATE)
    endpoint = "/" + "/".join(vreq.path)
    holding = time.monotonic()
    try:
        try:
            held = await approvals.hold(
                key, ctx.row.id, need, endpoint, vreq.method, plan.estimate.amount, ctx.row.request_summary,
                grantable=plan.estimate.pricing != "unpriceable",
            )  # fmt: skip
        finally:  # however the hold ends, it is not Keybrake's own time (overhead_ms, latency_ms)
            ctx.started += time.monotonic() - holding
            if left is not None:
                deadline.start(left)  # what was left of getting the reservation when the hold began
    except ClientGone:
        gone = Denial("approval_timeout", "The agent disconnected while the call waited for approval; nothing sent.")
        return await refuse(ctx, _released(gone.verdict), gone)
    except Denial as ended:
        return await refuse(ctx, _released(ended.verdict), ended)
    except EnforcementUnavailable as exc:
        return await refuse(ctx, _released("denied_enforcement_unavailable"), _unsure(exc))
    ctx.row.approval = held
    return None


def _released(verdict: str) -> Settlement:
    """A reserved call that ends before it is sent: its reservation released, nothing counted."""
    return Settlement(verdict, 0, "none", "none", keep_reservation=False, forwarded=False)


def _unsure(exc: EnforcementUnavailable) -> Denial:
    return Denial(
        "enforcement_unavailable",
        f"Keybrake could not check whether this call needs a person's approval ({exc}); nothing was sent. "
        "Retry shortly.",
    )
