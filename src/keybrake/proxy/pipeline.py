"""The request pipeline's async shell, top to bottom:

    authenticate → route & parse → admit → [lookup] → plan → reserve → [hold for approval]
    → forward → outcome → settle

Every decision is a pure function (proxy/decide.py before forwarding, proxy/outcome.py after the
answer); this module only calls the store and the vendor and acts on what they decide. Before
`reserve` nothing is decided from a stale snapshot: `reserve` re-reads the key's status, expiry
and policy version in the same transaction as the cap check, so a revoke or PATCH that has
returned is seen by the very next request (docs/scale-out.md). Nothing is forwarded unless the
reservation and the in-flight audit row are committed, and nothing is forwarded once the
request's deadline for getting its reservation (KEYBRAKE_RESERVE_DEADLINE_MS,
`keybrake.deadline`) has passed: it is answered 503 `enforcement_unavailable` and whatever it
reserved is released. Every reservation is settled on every path (proxy/record.py, the settler).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from keybrake import deadline
from keybrake.config import Settings
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.core.ledger import LedgerEntry
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import Upstream
from keybrake.core.windows import window_start
from keybrake.crypto import Sealer
from keybrake.net.egress import EgressRules
from keybrake.proxy import decide, offload
from keybrake.proxy.approval import Approvals, ApprovalSink, approve_or_refuse
from keybrake.proxy.auth import agent_headers, attach_agent_headers, extract_token
from keybrake.proxy.context import RequestContext
from keybrake.proxy.decide import REQUEST_CAP, Decided, Plan, Refusal, note
from keybrake.proxy.decisions import cap_denial, state_denial, unpriced_note, with_lookup
from keybrake.proxy.facts import find_facts
from keybrake.proxy.forward import AlertSink, Forwarder
from keybrake.proxy.keys import KeyLookups, key_state, unknown_key
from keybrake.proxy.metrics import ProxyMetrics
from keybrake.proxy.record import Recorder
from keybrake.proxy.render import ProxyResponse
from keybrake.proxy.reservation import Reservations
from keybrake.proxy.snapshots import KeySnapshots
from keybrake.store.base import (
    ApprovalStore,
    AuditRow,
    KeyRecord,
    KeyState,
    ReservationStore,
    ReserveResult,
    RetryCheck,
    SettleJob,
)
from keybrake.store.ids import new_audit_id
from keybrake.tokens import token_hash
from keybrake.vendors.base import Vendor, VendorRequest

log = logging.getLogger("keybrake.proxy")

_MAX_POLICY_RETRIES = 3
T = TypeVar("T", bound=Decided)
# (headers, token hash, token) as `admit` read them, for `handle` of that request: read once, not twice.
_ADMITTED: contextvars.ContextVar[tuple[tuple[tuple[str, str], ...], str, str] | None]
_ADMITTED = contextvars.ContextVar("keybrake_admitted", default=None)


class PipelineStore(ReservationStore, ApprovalStore, Protocol):
    """What the pipeline needs of the store: reservations and the holds of calls awaiting approval."""


class Pipeline:
    """The hot path: `handle` answers one proxied request; see the module docstring."""

    def __init__(
        self,
        *,
        store: PipelineStore,
        vendors: dict[str, Vendor],
        upstream: Upstream,
        settings: Settings,
        sealer: Sealer,
        pepper: bytes,
        instance_id: str,
        metrics: ProxyMetrics | None = None,
        settle: Callable[[SettleJob], asyncio.Future[bool]] | None = None,
        alerts: AlertSink | None = None,
        approval_sink: ApprovalSink | None = None,
    ) -> None:
        self.store = store
        self.vendors = vendors
        self.upstream = upstream
        self.settings = settings
        self.sealer = sealer
        self.pepper = pepper
        self.instance_id = instance_id
        self.snapshots = KeySnapshots(sealer, vendors, EgressRules(settings))
        self.keys = KeyLookups(store)
        self.rec = Recorder(store=store, settings=settings, settle=settle, metrics=metrics)
        self.alerts = alerts
        self.reservations = Reservations(store, self.rec, sealer, instance_id)
        self.forwarder = Forwarder(upstream, self.snapshots, self.rec, sealer, settings, alerts)
        self.approvals = Approvals(store, settings, instance_id, approval_sink, metrics)

    # -- the hot path ---------------------------------------------------------------------

    async def handle_denial(self, req: ProxyRequest, denial: Denial) -> ProxyResponse:
        """A request refused by the transport layer (size, encoding): recorded with its key if known."""
        return await self.handle(req, early_denial=denial)

    async def admit(self, head: ProxyRequest) -> tuple[KeyRecord | None, Denial | None]:
        """Before a body is read: the request's vault key, or why it is refused unread.

        A missing, malformed or unknown key is refused here (the body is never read). Everything
        else — including the key's state — is decided by `handle` as usual; a store failure here
        defers to it too (it fails closed).
        """
        deadline.start(self.settings.reserve_deadline_ms / 1000)  # from the arrival of the head
        try:
            token = extract_token(head, self._vault_key_header(head))
        except Denial as denial:
            return None, denial
        thash = token_hash(self.pepper, token)
        _ADMITTED.set((head.headers, thash, token))
        key = self.snapshots.get(thash)
        if key is None:
            try:
                key = await self.keys.lookup(thash, cached=False)
            except EnforcementUnavailable:
                return None, None
            if key is None:
                return None, unknown_key()
            self.snapshots.remember(thash, key)
        return key, None

    def _vault_key_header(self, req: ProxyRequest) -> str | None:
        """The header the request's vendor (by its path prefix) takes the vault key in, if any."""
        prefix = _first_segment(req.raw_path)
        vendor = self.vendors.get(prefix) if prefix else None
        return vendor.vault_key_header if vendor is not None else None

    async def handle(self, req: ProxyRequest, *, early_denial: Denial | None = None) -> ProxyResponse:
        budget_s = self.settings.reserve_deadline_ms / 1000
        admitted = _ADMITTED.get()
        d = deadline.current()
        if d is None:  # not admitted first (a direct call): the deadline starts now
            d = deadline.start(budget_s)
        elif admitted is None or admitted[0] is not req.headers:
            d = None  # a deadline not started by this request's `admit`: timed from now
        now = self.store.now_ms()
        path, mcp = _safe_path(req.raw_path), {"mcp": dict(req.via)} if req.via else None
        row = AuditRow(id=new_audit_id(now), ts=now, method=req.method, path=path, verdict="in_flight", metadata=mcp)
        # Timed from the head's arrival (`admit`: its key lookup is Keybrake's time), less the client's
        # upload, by which the deadline was moved.
        ctx = RequestContext(row, time.perf_counter() - (max(0.0, budget_s - d.remaining()) if d else 0.0))
        try:
            return await self._forward_if_allowed(req, ctx, early_denial)
        except Denial as denial:
            if denial.exposed_prefix is not None and self.alerts is not None:
                self.alerts.secret_exposed(denial.exposed_prefix, req.client)
            if ctx.row.preflight_lookup is not None and ctx.key is not None:
                # The refused request still sent a lookup with the operator's secret: it counts as
                # one request toward max_requests_per_hour, so lookups stay bounded by the cap —
                # as bookkeeping (never shed, time-bounded), not behind the denial rows' queue.
                deadline.clear()
                with contextlib.suppress(EnforcementUnavailable):
                    await self.store.count_request(ctx.key.id, window_start(REQUEST_CAP.window, self.store.now_ms()))
            deadline.clear(denial=True)  # final, nothing forwarded: its row is written in the capped DENIAL class
            return await self.rec.deny(ctx, denial)
        except EnforcementUnavailable as exc:
            if self.alerts is not None:
                self.alerts.enforcement_unavailable(str(exc))
            if ctx.sent:  # the vendor may have acted: never answer "nothing was forwarded"
                return await self.rec.crashed(ctx, exc)
            return self.rec.unavailable(ctx, exc)
        except Exception as exc:  # a bug or an input nothing anticipated: fail closed, keep the row
            return await self.rec.crashed(ctx, exc)

    async def _forward_if_allowed(
        self, req: ProxyRequest, ctx: RequestContext, early_denial: Denial | None
    ) -> ProxyResponse:
        """Decide, reserve, forward, settle. Raises Denial (nothing forwarded, nothing reserved)."""
        # The vendor prefix decides the error shape even before the key is known.
        prefix = _first_segment(req.raw_path)
        ctx.vendor = self.vendors.get(prefix) if prefix else None
        if req.header("transfer-encoding") is not None and req.header("content-length") is not None:
            raise Denial("header_invalid", "Content-Length and Transfer-Encoding together are refused.")

        # 1. authenticate; a revoked or expired key is refused on every request
        token, thash, key, fresh = await self._authenticate(req, ctx)
        if early_denial is not None:
            raise early_denial
        state = await key_state(key, self.store)
        if state is not KeyState.OK:
            raise state_denial(state, key)
        attach_agent_headers(ctx.row, key, *agent_headers(req, token))

        # 2. route to the key's vendor; the vendor's one parse
        where = _decided(ctx, decide.route(req, key, self.vendors))
        ctx.vendor = where.vendor
        prepared = await offload.prepare(req, token, where, self.settings.max_body_bytes, self.pepper)
        parsed = _decided(ctx, prepared.parsed)  # a large body's parse is off the event loop (offload)
        if prepared.placement is not None:
            raise prepared.placement
        at = _Attempt(thash, key, fresh, parsed.vreq, len(req.body))

        # 3-4. the key's policy: endpoint, scope, estimate; reserve against every cap
        reserved = await self._reserve_allowed(ctx, at, where.vendor, parsed.retry)
        if isinstance(reserved, ProxyResponse):
            return reserved  # a duplicate inside the dedup window: the first answer, replayed
        plan, result = reserved

        # 5. a call a person must approve waits here, its reservation held (proxy/approval.py)
        ctx.reserved, ctx.daily_counter = result.items, plan.daily_counter
        policy = self.snapshots.policy(at.key)
        ended = await approve_or_refuse(self.approvals, ctx, at.key, policy, plan, result, self.forwarder.refuse)
        if ended is not None:
            return ended

        # 6. swap the credential and forward
        sent = await self.forwarder.send(req, ctx, at.key, where, plan, result)
        if isinstance(sent, ProxyResponse):
            return sent  # refused after reserving; the reservation is settled

        # 7. settle to what the answer says the call cost; 8. answer with Keybrake's headers
        return await self.forwarder.answer(ctx, at.key, where.vendor, plan, result, sent)

    async def _authenticate(self, req: ProxyRequest, ctx: RequestContext) -> tuple[str, str, KeyRecord, bool]:
        """The request's key. A cached key is only a snapshot: the reservation re-reads its status,
        expiry and policy version, and a denial is never made from a stale snapshot (`fresh`)."""
        admitted = _ADMITTED.get()
        if admitted is not None and admitted[0] is req.headers:
            thash, token = admitted[1], admitted[2]  # the same headers `admit` read the key from
        else:
            token = extract_token(req, self._vault_key_header(req))
            thash = token_hash(self.pepper, token)
        ctx.well_formed_token = True
        key = self.snapshots.get(thash)
        fresh = key is None
        if key is None or key.status == "revoked" or key.expires_at <= self.store.now_ms():
            key = await self.keys.lookup(thash, cached=key is not None)
            fresh = True
        if key is None:
            raise unknown_key()
        self.snapshots.remember(thash, key)
        _attach_key(ctx, key)
        return token, thash, key, fresh

    async def _reserve_allowed(
        self, ctx: RequestContext, at: _Attempt, vendor: Vendor, retry: RetryCheck | None
    ) -> tuple[Plan, ReserveResult] | ProxyResponse:
        """Evaluate the key's policy and reserve; evaluated again (at most _MAX_POLICY_RETRIES
        times, then EnforcementUnavailable) whenever the key's policy changed since it was read.
        Raises the Denial of the policy, the key's state or a cap; returns a dedup replay."""
        for _ in range(_MAX_POLICY_RETRIES):
            policy = self.snapshots.policy(at.key)
            try:
                plan = await self._decide(ctx, at, policy, vendor)
            except Denial:
                # A denial from a snapshot is re-checked: a PATCH may have widened the policy since.
                if at.fresh or not await self._policy_changed(ctx, at):
                    raise
                continue
            if plan is None:
                continue  # patched since the snapshot: evaluate the new policy
            at.vreq = plan.vreq
            result = await self.reservations.reserve(ctx, at.key, plan.caps, retry, plan.dedup, plan.guard)
            if result.state is KeyState.CHANGED and result.key is not None:
                self._remember(ctx, at, result.key)  # patched since the snapshot: evaluate the new policy
                continue
            if result.state is not KeyState.OK:
                if result.key is not None:
                    self.snapshots.remember(at.thash, result.key)
                raise state_denial(result.state, result.key or at.key)
            if result.cap_hit is not None:
                if self.alerts is not None:
                    self.alerts.cap_hit(result.cap_hit, at.key.id)  # only schedules: alerts never slow a request
                raise cap_denial(result.cap_hit, at.key.id, unpriced_note(plan.estimate, ctx.row.preflight_lookup))
            if result.dedup_of is not None and plan.dedup is not None:
                replay = await self.reservations.duplicate(ctx, at.key, plan.dedup.fingerprint, result.dedup_of)
                if replay is None:
                    continue  # the first send went nowhere: this one may be sent
                return replay
            if plan.dedup is not None and result.retry_of is None:
                ctx.dedup_fingerprint = plan.dedup.fingerprint
            refusal = decide.reserved_refusal(result, plan.object_ref)
            if refusal is not None:
                raise refusal
            if result.retry_of is not None:
                ctx.row.metadata = {**(ctx.row.metadata or {}), "retry_of": result.retry_of.id}
            return plan, result
        raise EnforcementUnavailable("the key's policy kept changing during the request")

    async def _decide(self, ctx: RequestContext, at: _Attempt, policy: Policy, vendor: Vendor) -> Plan | None:
        """Endpoint, scope and parameter rules, then the estimate and caps (a large body's off the
        event loop: offload). Everything that needs no vendor data is checked before any lookup made
        with the operator's secret. None: the key's policy changed since the snapshot (`at`)."""
        admitted = _decided(ctx, decide.admit(policy, vendor, at.vreq))
        missing = [o for o in admitted.objects_needed if o not in at.facts]
        if missing:
            current = await self._before_lookup(at, policy)
            if current is not None:
                self._remember(ctx, at, current)
                return None
            # only the vendor's time inside moves the deadline (find_facts); its store calls count
            found = await find_facts(ctx, self.store, self.upstream, self.snapshots, at.key, vendor, at.vreq, missing)
            at.facts.update(found)
            at.vreq = decide.with_facts(at.vreq, at.facts)  # the one merge point of looked-up facts
        key, fx = at.key, self.settings.fx_rates
        return _decided(ctx, await offload.off_loop(at.size, decide.plan, policy, key, vendor, at.vreq, at.facts, fx))

    async def _policy_changed(self, ctx: RequestContext, at: _Attempt) -> bool:
        """After a denial drawn from a snapshot: True when the key's policy changed since (`at`
        then holds the current key)."""
        current = await self.store.key_by_hash(at.thash)
        at.fresh = True
        if current is None or current.policy_version == at.key.policy_version:
            return False
        self._remember(ctx, at, current)
        return True

    async def _before_lookup(self, at: _Attempt, policy: Policy) -> KeyRecord | None:
        """Right before a lookup made with the operator's secret: the key's current state and its
        request cap, read from the store (a snapshot may predate a revoke).

        Raises the key's state denial or a request-cap denial; returns the current key when its
        policy changed since the snapshot (None when it did not).
        """
        current = await self.store.key_by_hash(at.thash)
        if current is None:
            raise unknown_key()
        self.snapshots.remember(at.thash, current)
        state = await key_state(current, self.store)
        if state is not KeyState.OK:
            raise state_denial(state, current)
        if current.policy_version != at.key.policy_version:
            return current
        if getattr(policy, REQUEST_CAP.field) is not None:
            ws = window_start(REQUEST_CAP.window, self.store.now_ms())
            counters = await self.store.counters_for(f"key:{at.key.id}", [(REQUEST_CAP.counter, ws)])
            got = counters[REQUEST_CAP.counter]
            hit = decide.request_cap_hit(policy, at.key.id, got.used, got.reserved, ws)
            if hit is not None:
                raise cap_denial(hit, at.key.id)
        return None

    # -- steps ----------------------------------------------------------------------------

    def _remember(self, ctx: RequestContext, at: _Attempt, key: KeyRecord) -> None:
        """The key as just read from the store: cached, attached to the row, evaluated from now on."""
        at.key, at.fresh = key, True
        self.snapshots.remember(at.thash, key)
        _attach_key(ctx, key)


@dataclass
class _Attempt:
    """The shell's state across evaluations of the policy: the key as last read and whether it
    was read from the store during this request (`fresh`: a denial drawn from it stands), the
    request with the facts looked up so far, its body's length (bytes)."""

    thash: str
    key: KeyRecord
    fresh: bool
    vreq: VendorRequest
    size: int
    facts: dict[str, LedgerEntry] = field(default_factory=dict)


def _decided(ctx: RequestContext, result: T | Refusal) -> T:
    """Record what a decision learnt on the row; raise its refusal, else return its result."""
    if isinstance(result, Refusal):
        note(ctx.row, result.notes)
        raise with_lookup(result.denial, ctx.row.preflight_lookup)
    note(ctx.row, result.notes)
    return result


def _attach_key(ctx: RequestContext, key: KeyRecord) -> None:
    ctx.key = key
    row = ctx.row
    row.key_id, row.label, row.vendor, row.credential = key.id, key.label, key.vendor, key.credential
    row.agent_run_id = key.metadata.get("agent_run_id") or row.agent_run_id  # bound: on refusals of its state too


def _first_segment(raw_path: bytes) -> str | None:
    parts = raw_path.split(b"/", 2)
    return parts[1].decode("latin-1") if len(parts) > 1 and parts[1] else None


def _safe_path(raw_path: bytes) -> str:
    return raw_path.decode("latin-1")[:2048]
