"""The request pipeline, top to bottom:

    authenticate → normalise & match → scope & params → estimate → reserve → forward → settle → audit

`Pipeline.handle` is the hot path. Every decision before `reserve` is a pure function of the
request and the key's policy; `reserve` re-reads the key's status, expiry and policy version
in the same transaction as the cap check, so a revoke or PATCH that has returned is seen by
the very next request (docs/scale-out.md). Nothing is forwarded unless the reservation and the
in-flight audit row are committed, and nothing is forwarded once the request's deadline for
getting its reservation (KEYBRAKE_RESERVE_DEADLINE_MS, `keybrake.deadline`) has passed: it is
answered 503 `enforcement_unavailable` and whatever it reserved is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from keybrake import deadline
from keybrake.config import Settings
from keybrake.core.errors import CapHit, Denial, EnforcementUnavailable
from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.money import format_usd
from keybrake.core.params import check_charset, check_no_body
from keybrake.core.paths import join, normalise_path
from keybrake.core.policy import Policy, check_max_per_call, check_param_rules
from keybrake.core.request import ProxyRequest
from keybrake.core.windows import Window, resets_at, window_start
from keybrake.crypto import Sealer
from keybrake.logs import redact
from keybrake.net.egress import EgressRules
from keybrake.net.upstream import (
    Upstream,
    UpstreamForbidden,
    UpstreamOutcomeUnknown,
    UpstreamRequest,
    UpstreamUnreachable,
)
from keybrake.proxy.auth import agent_headers, extract_token
from keybrake.proxy.decisions import (
    cap_denial,
    caps_for,
    check_estimate_bounds,
    dedup_check,
    match_endpoint,
    read_idempotency_key,
    state_denial,
    unknown_outcome,
    vendor_keeps,
)
from keybrake.proxy.facts import find_facts, json_or_none
from keybrake.proxy.record import Recorder, RequestContext
from keybrake.proxy.render import ProxyResponse, open_replay, seal_replay
from keybrake.proxy.snapshots import KeySnapshots
from keybrake.store.base import (
    AuditRow,
    CapSpec,
    DedupCheck,
    DedupHit,
    EarlierSettlement,
    KeyRecord,
    KeyState,
    ObjectGuard,
    ReservationStore,
    ReserveResult,
    RetryCheck,
    SettleJob,
    Settlement,
)
from keybrake.store.ids import new_audit_id
from keybrake.tokens import token_hash
from keybrake.vendors.base import COMMON_FORWARDED_HEADERS, Estimate, Vendor, VendorRequest, content_type

log = logging.getLogger("keybrake.proxy")

_SUPPORTED_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "set-cookie",
        # Keybrake's server sets its own Date (two would reach the agent) and names no server.
        "date",
        "server",
    }
)
_MAX_POLICY_RETRIES = 3
IN_FLIGHT_WAIT_S = 2.0  # a retry waits this long for the request it repeats to finish
# Settlements that do not depend on the answer: nothing sent (release, no request counted),
# the vendor refused the operator's secret (release; the request did reach it).
_NOTHING_SENT = Settlement("upstream_error", 0, "none", "none", keep_reservation=False, forwarded=False)
_REFUSED_BY_VENDOR = Settlement("upstream_error", 0, "none", "none", keep_reservation=False, forwarded=True)
# Reserved, but past the request's deadline: never sent, the reservation released.
_TOO_LATE = Settlement("denied_enforcement_unavailable", 0, "none", "none", keep_reservation=False, forwarded=False)


DEDUP_WAIT_S = 10.0
# A request is forwarded only with this much of its deadline left, so that it reaches the vendor
# before the deadline (the agent may give up at the deadline and retry).
FORWARD_MARGIN_S = 0.1


class AlertSink(Protocol):
    """Where the pipeline reports what operators want to hear about; calls only schedule work."""

    def cap_hit(self, cap: CapHit, key_id: str | None) -> None: ...
    def credential_rejected(self, credential: str, vendor: str, key_id: str | None) -> None: ...
    def secret_exposed(self, prefix: str, client: str) -> None: ...
    def enforcement_unavailable(self, error: str) -> None: ...


class Pipeline:
    def __init__(
        self,
        *,
        store: ReservationStore,
        vendors: dict[str, Vendor],
        upstream: Upstream,
        settings: Settings,
        sealer: Sealer,
        pepper: bytes,
        instance_id: str,
        on_verdict: Callable[[str, str, int], None] | None = None,
        settle: Callable[[SettleJob], asyncio.Future[None]] | None = None,
        alerts: AlertSink | None = None,
    ) -> None:
        self.store = store
        self.vendors = vendors
        self.upstream = upstream
        self.settings = settings
        self.sealer = sealer
        self.pepper = pepper
        self.instance_id = instance_id
        self.snapshots = KeySnapshots(sealer, vendors, EgressRules(settings))
        # Uncached key lookups in progress, by token hash: a burst on one new key makes one lookup.
        self._lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self.rec = Recorder(store=store, settings=settings, settle=settle, on_verdict=on_verdict)
        self.alerts = alerts
        self._late: set[asyncio.Task[None]] = set()  # releases of reservations that committed too late

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
            token = extract_token(head)
        except Denial as denial:
            return None, denial
        thash = token_hash(self.pepper, token)
        key = self.snapshots.get(thash)
        if key is None:
            try:
                key = await self._lookup(thash, cached=False)
            except EnforcementUnavailable:
                return None, None
            if key is None:
                return None, Denial("key_invalid", "Unknown vault key. Do not retry; ask the operator for a new key.")
            self.snapshots.remember(thash, key)
        return key, None

    async def handle(self, req: ProxyRequest, *, early_denial: Denial | None = None) -> ProxyResponse:
        if deadline.current() is None:  # not admitted first (a direct call): the deadline starts now
            deadline.start(self.settings.reserve_deadline_ms / 1000)
        now = self.store.now_ms()
        row = AuditRow(
            id=new_audit_id(now), ts=now, method=req.method, path=_safe_path(req.raw_path), verdict="in_flight"
        )
        ctx = RequestContext(row, time.perf_counter())
        try:
            return await self._forward_if_allowed(req, ctx, early_denial)
        except Denial as denial:
            deadline.clear(denial=True)  # final, nothing forwarded: its row is written in the capped DENIAL class
            if denial.exposed_prefix is not None and self.alerts is not None:
                self.alerts.secret_exposed(denial.exposed_prefix, req.client)
            if ctx.row.preflight_lookup is not None and ctx.key is not None:
                # The refused request still sent a lookup with the operator's secret: it counts as
                # one request toward max_requests_per_hour, so lookups stay bounded by the cap.
                with contextlib.suppress(EnforcementUnavailable):
                    await self.store.count_request(ctx.key.id, window_start(Window.HOUR, self.store.now_ms()))
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
        # The vendor prefix decides the error shape even before the key is known.
        prefix = _first_segment(req.raw_path)
        ctx.vendor = self.vendors.get(prefix) if prefix else None
        if req.header("transfer-encoding") is not None and req.header("content-length") is not None:
            raise Denial("header_invalid", "Content-Length and Transfer-Encoding together are refused.")

        # 1. authenticate. A cached key is only a snapshot: the reservation re-reads its status,
        #    expiry and policy version, and a denial is never made from a stale snapshot.
        token = extract_token(req)
        ctx.well_formed_token = True
        thash = token_hash(self.pepper, token)
        key = self.snapshots.get(thash)
        fresh = key is None
        if key is None or key.status == "revoked" or key.expires_at <= self.store.now_ms():
            key = await self._lookup(thash, cached=key is not None)
            fresh = True
        if key is None:
            raise Denial("key_invalid", "Unknown vault key. Do not retry; ask the operator for a new key.")
        self.snapshots.remember(thash, key)
        self._attach_key(ctx, key)
        if early_denial is not None:
            raise early_denial
        await self._check_key_state(key)
        run_id, event_id, extra_headers = agent_headers(req)
        self._attach_agent_headers(ctx, key, run_id, event_id, extra_headers)

        # 2. normalise the path and route to the key's vendor
        if req.method not in _SUPPORTED_METHODS:
            raise Denial(
                "method_not_supported", f"Method {req.method[:10]} is not proxied; use GET, POST, PATCH, PUT or DELETE."
            )
        segments = normalise_path(req.raw_path)
        raw_rest = req.raw_path
        if segments and segments[0] in self.vendors:
            if segments[0] != key.vendor:
                raise Denial(
                    "vendor_mismatch",
                    f"This vault key is for {key.vendor}, not {segments[0]}. Do not retry with this key.",
                )
            segments = segments[1:]
            raw_rest = b"/" + req.raw_path.split(b"/", 2)[2] if req.raw_path.count(b"/") >= 2 else b"/"
        vendor = self.vendors[key.vendor]
        ctx.vendor = vendor
        # Every spelling the vendor accepts is one operation: all checks and the audit row see
        # the canonical path; `raw_rest` (the agent's bytes) is still what is forwarded.
        segments = vendor.canonical(req.method, segments)
        ctx.row.path = join(segments)
        limit = self.settings.max_body_bytes or vendor.max_body_bytes
        if len(req.body) > limit:
            raise Denial("body_too_large", f"The request body is larger than {limit} bytes (KEYBRAKE_MAX_BODY_BYTES).")
        # One parse: a GET or DELETE body is never read as parameters, so it is refused outright.
        check_no_body(req.method, content_type(req), req.body)
        check_charset(req.header("content-type"), req.body)
        vreq = vendor.parse(req, segments)
        ctx.row.request_summary = vendor.summary(vreq) or None
        ctx.row.account_context = vreq.account_context
        ctx.row.idempotency_key = read_idempotency_key(req, vendor)
        if req.body:
            ctx.row.body_hash = hmac.new(self.pepper, req.body, hashlib.sha256).hexdigest()

        idempotency_key = ctx.row.idempotency_key
        fingerprint = vendor.fingerprint(vreq) if idempotency_key else None
        retry = (
            RetryCheck(idempotency_key, fingerprint, cached_statuses=vendor.idempotency_cached_statuses)
            if idempotency_key and fingerprint
            else None
        )

        facts: dict[str, LedgerEntry] = {}
        for _ in range(_MAX_POLICY_RETRIES):
            policy = self.snapshots.policy(key)
            try:
                # 3. endpoint, scope and parameter rules. Everything that needs no vendor data is
                #    checked before any lookup made with the operator's secret.
                ctx.row.endpoint = match_endpoint(policy, vendor, vreq)
                vendor.precheck(policy, vreq)
                check_param_rules(policy, vreq.params)
                need = vendor.objects_needed(vreq, policy.customer_allowlist is not None)
                missing = [o for o in need if o not in facts]
                if missing:
                    current = await self._before_lookup(ctx, key, thash, policy)
                    if current is not None:  # patched since the snapshot: evaluate the new policy
                        key, fresh = current, True
                        continue
                    # only the vendor's time inside moves the deadline (find_facts); its store calls count
                    facts.update(
                        await find_facts(ctx, self.store, self.upstream, self.snapshots, key, vendor, vreq, missing)
                    )
                    vreq = replace(vreq, facts=dict(facts))
                scope = vendor.check_scope(policy, vreq)
                ctx.row.customer_scope_id = scope.customer_scope_id
                if scope.detail is not None:
                    vreq = replace(vreq, scope=scope.detail)
                    ctx.row.request_summary = vendor.summary(vreq) or None
                # 4a. estimate what the call can move
                estimate = self._estimate(ctx, policy, vendor, vreq, key)
            except Denial:
                if not fresh:  # a PATCH may have widened the policy since the snapshot
                    current = await self.store.key_by_hash(thash)
                    fresh = True
                    if current is not None and current.policy_version != key.policy_version:
                        key = current
                        self.snapshots.remember(thash, key)
                        self._attach_key(ctx, key)
                        continue
                raise
            # 4b. reserve against every cap, atomically with the key's current state
            caps = caps_for(key, policy, estimate)
            dedup = dedup_check(policy, vendor, vreq)
            object_ref = vendor.object_ref(vreq)
            guard = ObjectGuard(object_ref, facts.get(object_ref), object_ref in facts) if object_ref else None
            result = await self._reserve(ctx, key, caps, retry, dedup, guard)
            if result.state is KeyState.CHANGED and result.key is not None:
                key = result.key  # patched since the snapshot: evaluate the new policy
                fresh = True
                self.snapshots.remember(thash, key)
                self._attach_key(ctx, key)
                continue
            if result.state is not KeyState.OK and result.key is not None:
                self.snapshots.remember(thash, result.key)
            if result.state is not KeyState.OK:
                raise state_denial(result.state, result.key or key)
            if result.cap_hit is not None:
                if self.alerts is not None:
                    self.alerts.cap_hit(result.cap_hit, key.id)  # only schedules: alerts never slow a request
                raise cap_denial(result.cap_hit, key.id)
            if result.dedup_of is not None and dedup is not None:
                replay = await self._duplicate(ctx, key, dedup.fingerprint, result.dedup_of)
                if replay is None:
                    continue  # the first send went nowhere: this one may be sent
                return replay
            if dedup is not None and result.retry_of is None:
                ctx.dedup_fingerprint = dedup.fingerprint
            if result.object_busy is not None:
                # Facts about the object may be changing under this request (an update of its
                # amount, a confirm authorising it): it goes only once that write is answered.
                raise Denial(
                    "idempotency_in_flight",
                    f"Another request is acting on {object_ref} ({result.object_busy}); retry in a second (this "
                    "one is priced again then).",
                )
            if result.retry_of is not None:
                if result.retry_of.verdict == "in_flight":
                    raise Denial(
                        "idempotency_in_flight",
                        f"The first request with this Idempotency-Key ({result.retry_of.id}) is still in flight; "
                        "retry in a second with the same key.",
                    )
                ctx.row.metadata = {**(ctx.row.metadata or {}), "retry_of": result.retry_of.id}
            break
        else:
            raise EnforcementUnavailable("the key's policy kept changing during the request")

        # 5. swap the credential and forward
        return await self._forward(req, ctx, key, vendor, vreq, estimate, policy, result, raw_rest)

    async def _before_lookup(self, ctx: RequestContext, key: KeyRecord, thash: str, policy: Policy) -> KeyRecord | None:
        """Right before a lookup made with the operator's secret: the key's current state and its
        request cap, read from the store (a snapshot may predate a revoke).

        Raises the key's state denial or a request-cap denial; returns the current key when its
        policy changed since the snapshot (None when it did not).
        """
        current = await self.store.key_by_hash(thash)
        if current is None:
            raise Denial("key_invalid", "Unknown vault key. Do not retry; ask the operator for a new key.")
        self.snapshots.remember(thash, current)
        await self._check_key_state(current)
        if current.policy_version != key.policy_version:
            self._attach_key(ctx, current)
            return current
        cap = policy.max_requests_per_hour
        if cap is not None:
            ws = window_start(Window.HOUR, self.store.now_ms())
            got = (await self.store.counters_for(f"key:{key.id}", [("hourly_requests", ws)]))["hourly_requests"]
            if got.used + got.reserved + 1 > cap:
                hit = CapHit(
                    "key",
                    key.id,
                    "max_requests_per_hour",
                    cap,
                    got.used + got.reserved,
                    1,
                    resets_at(Window.HOUR, ws),
                    False,
                )
                raise cap_denial(hit, key.id)
        return None

    async def _reserve(
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
            try:
                result = await self.store.reserve(
                    key.id, key.policy_version, caps, ctx.row, self.instance_id, retry, dedup, guard
                )
            except EnforcementUnavailable as exc:
                if exc.commit_unknown and exc.pending is not None:
                    self._release_when_done(ctx, dedup, exc.pending)  # past the deadline, still running
                elif exc.commit_unknown:
                    await self.rec.release_unanswered(ctx, dedup)
                raise
            # A busy object is not waited for here: the request was priced from facts the write in
            # flight may be changing, so it is refused (409, retryable) and priced afresh on retry.
            in_flight = result.retry_of is not None and result.retry_of.verdict == "in_flight"
            if not in_flight or time.monotonic() + pause > wait_until:
                return result
            await asyncio.sleep(pause)
            _extend(pause)  # waiting on the earlier request, not on the store
            pause = min(pause * 2, 0.2)

    async def _forward(
        self,
        req: ProxyRequest,
        ctx: RequestContext,
        key: KeyRecord,
        vendor: Vendor,
        vreq: VendorRequest,
        estimate: Estimate,
        policy: Policy,
        reserved: ReserveResult,
        raw_rest: bytes,
    ) -> ProxyResponse:
        row = ctx.row
        items, remaining = reserved.items, reserved.remaining_usd
        daily_counter = (
            "daily_usd"
            if policy.daily_usd_cap is not None
            else ("total_usd" if policy.total_usd_cap is not None else None)
        )
        ctx.reserved, ctx.daily_counter = items, daily_counter
        try:
            secret, base_url = self.snapshots.credential(key, reserved.credential)
            path = vendor.upstream_path(vreq, raw_rest, secret, key.id)
        except Denial as before_sending:
            return await self.rec.refuse(ctx, items, _NOTHING_SENT, daily_counter, before_sending)
        url = base_url.rstrip("/") + path.decode("latin-1")
        if req.query:
            url += "?" + req.query.decode("latin-1")
        allowed = COMMON_FORWARDED_HEADERS | vendor.forwarded_headers
        headers = [(k, v) for k, v in req.headers if k in allowed]
        headers += vendor.upstream_headers(secret)
        headers.append(("accept-encoding", "identity"))
        body_out = vendor.upstream_body(vreq, req.body)
        late = deadline.current()
        if late is not None and late.remaining() < FORWARD_MARGIN_S:
            # The reservation came back after the deadline (a slow store): the agent may have
            # given up and retried, so this request is never sent; its reservation is released.
            if self.alerts is not None:
                self.alerts.enforcement_unavailable("a reservation came back after the request's deadline")
            too_late = Denial(
                "enforcement_unavailable",
                "Keybrake could not reserve this request within its deadline (KEYBRAKE_RESERVE_DEADLINE_MS); "
                "nothing was forwarded. Retry shortly.",
            )
            return await self.rec.refuse(ctx, items, _TOO_LATE, daily_counter, too_late)
        ctx.sent = True  # from here on the vendor may act: an unexpected error keeps the reservation
        deadline.clear()  # the deadline bounds getting the reservation; nothing after sending is refused for it
        try:
            resp = await self.upstream.send(UpstreamRequest(req.method, url, headers, body_out))
        except UpstreamForbidden as exc:
            refusal = Denial(
                "upstream_forbidden",
                f"Refused to send the {vendor.name} credential: {exc}. Nothing was sent. Do not retry; the "
                "operator must check DNS or list the host in KEYBRAKE_UPSTREAM_HOSTS.",
            )
            return await self.rec.refuse(ctx, items, _NOTHING_SENT, daily_counter, refusal)
        except UpstreamUnreachable as exc:
            refusal = Denial(
                "upstream_unreachable",
                f"{vendor.name} could not be reached ({exc}); nothing was "
                "sent and nothing was charged. Retrying may help.",
            )
            return await self.rec.refuse(ctx, items, _NOTHING_SENT, daily_counter, refusal)
        except UpstreamOutcomeUnknown as exc:
            ctx.upstream_ms = exc.elapsed_ms
            refusal = Denial(
                "upstream_timeout",
                f"{vendor.name} did not answer ({exc}). The request may have "
                "been carried out: retry only with the same Idempotency-Key.",
            )
            return await self.rec.refuse(
                ctx, items, unknown_outcome(row.reserved_usd, estimate), daily_counter, refusal
            )

        # 6. settle to what the answer says the call cost
        ctx.upstream_ms = resp.elapsed_ms
        row.upstream_status = resp.status
        resp_headers = {k.lower(): v for k, v in resp.headers}
        row.vendor_request_id = vendor.request_id(resp_headers)
        body = resp.body
        doc = json_or_none(body, resp_headers)
        if vendor.credential_rejected(resp.status, doc):
            if self.alerts is not None:
                self.alerts.credential_rejected(key.credential, vendor.name, key.id)
            # The operator's secret was refused: never pass the vendor's text (it may echo the key).
            refusal = Denial(
                "upstream_credential_rejected",
                f"The operator's credential '{key.credential}' was "
                f"refused by {vendor.name}. Do not retry; the operator must rotate it.",
            )
            return await self.rec.refuse(ctx, items, _REFUSED_BY_VENDOR, daily_counter, refusal)
        if resp.status >= 500:
            settlement = unknown_outcome(row.reserved_usd, estimate)
            row.reason = f"{vendor.name} answered {resp.status}; the outcome is unknown and the reservation is kept"
        if doc is not None:
            # Secret-bearing fields never reach the agent, whatever the policy (docs/policy.md, guarded endpoints).
            redacted = vendor.redact(vreq, doc)
            if redacted:
                row.redacted_fields = redacted
                body = json.dumps(doc).encode()
        if resp.status == 403:
            # Other vendor 403s pass through, without any key text the vendor echoed.
            body = redact(body.decode("utf-8", "replace")).encode()
        earlier: EarlierSettlement | None = None
        count: ObjectCount | None = None
        if resp.status < 500 and reserved.retry_of is not None:
            # A retry reserved nothing; its answer tells what the earlier request did (§3.1.4).
            settlement = Settlement("allowed", 0, "none", "none", keep_reservation=False, forwarded=True)
            if reserved.retry_of.verdict == "outcome_unknown" and vendor_keeps(resp.status, vendor):
                first = {k: v for k, v in resp_headers.items() if k != "idempotent-replayed"}
                c = vendor.cost(vreq, estimate, resp.status, first, doc, self.settings.fx_rates)
                earlier = EarlierSettlement(reserved.retry_of.id, c.cost_usd, c.cost_source, c.cost_kind, c.count)
        elif resp.status < 500:
            cost = vendor.cost(vreq, estimate, resp.status, resp_headers, doc, self.settings.fx_rates)
            row.vendor_object_id = cost.vendor_object_id
            count = cost.count
            settlement = Settlement(
                "allowed",
                cost.cost_usd,
                cost.cost_source,
                cost.cost_kind,
                cost.keep_reservation,
                forwarded=True,
                billed=resp.status < 300,
            )
        row.status = resp.status
        # A replayed answer (`Idempotent-Replayed: true`) is the object as it was at the first call,
        # not as it is: it teaches nothing (found by the red-team run: a replay rolled an amount
        # back to $1 before a $9,000 confirm).
        replayed = resp_headers.get("idempotent-replayed", "").strip().lower() == "true"
        learnt = vendor.ledger_entries(doc, vreq.account_context) if resp.status < 300 and not replayed else []
        out = [
            (k, v) for k, v in resp.headers if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("x-keybrake-")
        ]
        if ctx.dedup_fingerprint is not None and resp.status < 500:
            ctx.dedup_answer = seal_replay(self.sealer, key.id, ctx.dedup_fingerprint, resp.status, out, body)
        await self.rec.finish(
            ctx,
            items,
            settlement,
            daily_counter,
            settles_earlier=earlier,
            ledger=(key.credential, learnt) if learnt else None,
            count=count,
        )
        # 7. answer with the vendor's response and Keybrake's headers
        out += self.rec.keybrake_headers(ctx)
        if remaining is not None:
            out.append(("x-keybrake-spend-remaining-usd", format_usd(max(0, remaining))))
        return ProxyResponse(resp.status, out, body)

    async def _duplicate(
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
        await self.rec.replayed(ctx, current.row_id, status)
        headers += self.rec.keybrake_headers(ctx)
        headers += [("x-keybrake-deduplicated", "true"), ("x-keybrake-deduplicated-of", current.row_id)]
        return ProxyResponse(status, headers, body)

    # -- steps ----------------------------------------------------------------------------

    def _attach_key(self, ctx: RequestContext, key: KeyRecord) -> None:
        ctx.key = key
        row = ctx.row
        row.key_id, row.label, row.vendor, row.credential = key.id, key.label, key.vendor, key.credential

    async def _lookup(self, thash: str, *, cached: bool) -> KeyRecord | None:
        """The key with token hash `thash`. A token not in the snapshot cache has authenticated
        nobody yet: its lookup queues in the capped LOOKUP class (store/gate.py), so a flood of
        unknown keys never takes the places of requests whose key is known; and concurrent
        lookups of one token share a single store call (a burst of a new key's first requests
        is one lookup, never refused for the LOOKUP cap), each waiting no longer than its own
        deadline (EnforcementUnavailable past it)."""
        d = deadline.current()
        if cached or d is None:
            return await self.store.key_by_hash(thash)
        shared = self._lookups.get(thash)
        if shared is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(shared), max(0.0, d.remaining()))
            except TimeoutError:
                raise EnforcementUnavailable("the key lookup did not finish within the request's deadline") from None
        mine: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._lookups[thash] = mine
        kind, d.kind = d.kind, deadline.LOOKUP
        try:
            key = await self.store.key_by_hash(thash)
            mine.set_result(key)
            return key
        except BaseException as exc:
            mine.set_exception(exc if isinstance(exc, Exception) else EnforcementUnavailable("key lookup cancelled"))
            mine.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            d.kind = kind
            self._lookups.pop(thash, None)

    async def _check_key_state(self, key: KeyRecord) -> None:
        """Refuse a revoked key, or one expired by the database's clock.

        The local estimate of that clock only admits: a key it calls expired is refused only
        once the database's clock, read now, agrees (a host clock step never ends a live key).
        """
        if key.status == "revoked":
            raise state_denial(KeyState.REVOKED, key)
        if key.expires_at <= self.store.now_ms() and key.expires_at <= await self.store.db_now_ms():
            raise state_denial(KeyState.EXPIRED, key)

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

    @staticmethod
    def _attach_agent_headers(
        ctx: RequestContext, key: KeyRecord, run_id: str | None, event_id: str | None, extra: dict[str, str]
    ) -> None:
        row = ctx.row
        meta: dict[str, Any] = dict(key.metadata)
        bound = key.metadata.get("agent_run_id")
        row.agent_run_id = bound or run_id
        if bound and run_id and run_id != bound:
            meta["claimed_agent_run_id"] = run_id
        row.triggering_event_id = event_id
        if extra:
            meta["headers"] = extra
        row.metadata = meta or None

    def _estimate(
        self, ctx: RequestContext, policy: Policy, vendor: Vendor, vreq: VendorRequest, key: KeyRecord
    ) -> Estimate:
        estimate = vendor.estimate(vreq, self.settings.fx_rates)
        if estimate.pricing == "unpriceable":
            # Reserving the per-call bound stands in for the unknown amount; a bound of $0 cannot
            # (the call may move money), so it refuses exactly like no bound at all.
            if not policy.max_usd_per_call:
                raise Denial(
                    "unpriceable_request",
                    f"{vreq.method} {join(vreq.path)} may move money that "
                    "cannot be priced before the call; set a non-zero max_usd_per_call on the key or remove "
                    "this endpoint from allowed_endpoints. Do not retry.",
                )
            estimate = Estimate("unpriceable", policy.max_usd_per_call, estimate.cost_kind)
        check_estimate_bounds(estimate, vendor.name)
        check_max_per_call(policy, estimate.amount, key.id)
        ctx.row.reserved_usd = estimate.amount
        ctx.row.cost_kind = estimate.cost_kind if estimate.amount else "none"
        ctx.row.cost_source = "estimate" if estimate.amount else "none"
        return estimate


def _extend(seconds: float) -> None:
    """Time spent not waiting on the store does not count toward the request's deadline."""
    d = deadline.current()
    if d is not None:
        d.extend(seconds)


def _first_segment(raw_path: bytes) -> str | None:
    parts = raw_path.split(b"/", 2)
    return parts[1].decode("latin-1") if len(parts) > 1 and parts[1] else None


def _safe_path(raw_path: bytes) -> str:
    return raw_path.decode("latin-1")[:2048]


def hostname() -> str:
    return socket.gethostname()
