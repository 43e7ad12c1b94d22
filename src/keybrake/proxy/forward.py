"""Forwarding a reserved request and settling it: swap in the credential, send, turn the answer
into a settlement (proxy/outcome.py) and the agent's response. Part of the pipeline's shell
(proxy/pipeline.py): every path from here settles the reservation, through the recorder.
"""

from __future__ import annotations

from typing import Protocol

from keybrake import deadline
from keybrake.config import Settings
from keybrake.core.errors import CapHit, Denial
from keybrake.core.money import format_usd
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import (
    Upstream,
    UpstreamForbidden,
    UpstreamOutcomeUnknown,
    UpstreamResponse,
    UpstreamUnreachable,
)
from keybrake.crypto import Sealer
from keybrake.proxy import decide, offload
from keybrake.proxy.context import RequestContext
from keybrake.proxy.decide import Plan, Refusal, Route, note
from keybrake.proxy.echoes import credential_echoes, scrub_answer
from keybrake.proxy.outcome import NOTHING_SENT, TOO_LATE, outcome, too_late, transport_failure
from keybrake.proxy.record import Recorder
from keybrake.proxy.render import ProxyResponse, seal_replay
from keybrake.proxy.snapshots import KeySnapshots
from keybrake.store.base import KeyRecord, ReserveResult, Settlement
from keybrake.vendors.base import Vendor

# A request is forwarded only with this much of its deadline left, so that it reaches the vendor
# before the deadline (the agent may give up at the deadline and retry).
FORWARD_MARGIN_S = 0.1


class AlertSink(Protocol):
    """Where the pipeline reports what operators want to hear about; calls only schedule work."""

    def cap_hit(self, cap: CapHit, key_id: str | None) -> None: ...
    def credential_rejected(self, credential: str, vendor: str, key_id: str | None) -> None: ...
    def secret_exposed(self, prefix: str, client: str) -> None: ...
    def enforcement_unavailable(self, error: str) -> None: ...


class Forwarder:
    """Sends reserved requests through `upstream` and settles them through `rec`."""

    def __init__(
        self,
        upstream: Upstream,
        snapshots: KeySnapshots,
        rec: Recorder,
        sealer: Sealer,
        settings: Settings,
        alerts: AlertSink | None,
    ) -> None:
        self.upstream = upstream
        self.snapshots = snapshots
        self.rec = rec
        self.sealer = sealer
        self.settings = settings
        self.alerts = alerts

    async def send(
        self, req: ProxyRequest, ctx: RequestContext, key: KeyRecord, where: Route, plan: Plan, result: ReserveResult
    ) -> UpstreamResponse | ProxyResponse:
        """Swap in the credential and send; a refusal once reserved is settled (released when
        nothing was sent, kept when the vendor may have acted) and answered."""
        try:
            secret, base_url = self.snapshots.credential(key, result.credential)
        except Denial as before_sending:
            return await self.refuse(ctx, NOTHING_SENT, before_sending)
        request = decide.upstream_request(req, where, plan.vreq, secret, base_url, key.id)
        if isinstance(request, Refusal):
            return await self.refuse(ctx, NOTHING_SENT, request.denial)
        late = deadline.current()
        if late is not None and late.remaining() < FORWARD_MARGIN_S:
            # The reservation came back after the deadline (a slow store): the agent may have
            # given up and retried, so this request is never sent; its reservation is released.
            if self.alerts is not None:
                self.alerts.enforcement_unavailable("a reservation came back after the request's deadline")
            return await self.refuse(ctx, TOO_LATE, too_late())
        ctx.sent = True  # from here on the vendor may act: an unexpected error keeps the reservation
        deadline.clear()  # the deadline bounds getting the reservation; nothing after sending is refused for it
        try:
            resp = await self.upstream.send(request)
        except (UpstreamForbidden, UpstreamUnreachable, UpstreamOutcomeUnknown) as exc:
            if isinstance(exc, UpstreamOutcomeUnknown):
                ctx.upstream_ms = exc.elapsed_ms
            refusal, settlement = transport_failure(
                exc,
                where.vendor,
                ctx.row.idempotency_key,
                ctx.row.reserved_usd,
                plan.estimate,
                honoured=await offload.off_loop(len(req.body), where.vendor.fingerprint, plan.vreq) is not None,
            )
            return await self.refuse(ctx, settlement, refusal)
        # The operator's credential never reaches the agent, even when the answer repeats the request.
        return await offload.off_loop(len(resp.body), scrub_answer, resp, credential_echoes(where.vendor, secret))

    async def answer(
        self,
        ctx: RequestContext,
        key: KeyRecord,
        vendor: Vendor,
        plan: Plan,
        result: ReserveResult,
        resp: UpstreamResponse,
    ) -> ProxyResponse:
        """Settle to what the vendor's answer says (proxy/outcome.py) and answer with it."""
        ctx.upstream_ms = resp.elapsed_ms
        rates = self.settings.fx_rates
        got = outcome(
            vendor, plan.vreq, plan.estimate, ctx.row.reserved_usd, result.retry_of, key.credential, resp, rates
        )
        note(ctx.row, got.notes)
        if got.refusal is not None:
            if got.credential_rejected and self.alerts is not None:
                self.alerts.credential_rejected(key.credential, vendor.name, key.id)
            return await self.refuse(ctx, got.settlement, got.refusal)
        if ctx.dedup_fingerprint is not None and got.status < 500:
            fingerprint = ctx.dedup_fingerprint
            ctx.dedup_answer = seal_replay(self.sealer, key.id, fingerprint, got.status, got.headers, got.body)
        ledger = (key.credential, got.ledger) if got.ledger else None
        written = await self.rec.finish(
            ctx,
            result.items,
            got.settlement,
            plan.daily_counter,
            settles_earlier=got.earlier,
            ledger=ledger,
            count=got.count,
        )
        headers = got.headers + self.rec.keybrake_headers(ctx)
        if result.remaining_usd is not None:
            # What the caps left at this call's reservation, with this call at what it cost: what it
            # gave back (a declined card; written before this answer) counts only once written.
            settled = got.settlement
            freed = 0 if settled.keep_reservation or not written else (ctx.row.reserved_usd or 0) - settled.cost_usd
            headers.append(("x-keybrake-spend-remaining-usd", format_usd(max(0, result.remaining_usd + freed))))
        return ProxyResponse(got.status, headers, got.body)

    async def refuse(self, ctx: RequestContext, settlement: Settlement, refusal: Denial) -> ProxyResponse:
        """A reserved request that ends in Keybrake's answer: settle its reservation, render the refusal."""
        return await self.rec.refuse(ctx, ctx.reserved or [], settlement, ctx.daily_counter, refusal)
