"""Recording what happened to a request: its audit row, the denial answer, logs and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

from keybrake.config import Settings
from keybrake.core.approvals import approved_headers
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.core.ledger import LedgerEntry, ObjectCount
from keybrake.core.money import format_usd
from keybrake.logs import event, redact
from keybrake.proxy.context import RequestContext
from keybrake.proxy.decisions import with_mcp_hint
from keybrake.proxy.metrics import ProxyMetrics, server_timing
from keybrake.proxy.render import ProxyResponse, denial_response
from keybrake.store.base import (
    AuditRow,
    DedupCheck,
    DedupOutcome,
    EarlierSettlement,
    ReservationStore,
    ReservedItem,
    SettleJob,
    Settlement,
)

log = logging.getLogger("keybrake.proxy")
LEDGER_WAIT_S = 5.0  # longest an answer waits for its ledger update to be durable
SHED_LOG_S = 10.0  # shed denial rows are logged as a count at most once per this many seconds


class Recorder:
    def __init__(
        self,
        *,
        store: ReservationStore,
        settings: Settings,
        settle: Callable[[SettleJob], asyncio.Future[bool]] | None,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.settle = settle
        self.metrics = metrics  # proxy/metrics.py; None: nothing counted (set by the app)
        self._unauth_second = 0
        self._unauth_count = 0
        self._unauth_suppressed = 0
        self._shed_n = 0  # denial rows shed since the last log line
        self._shed_logged = 0.0  # monotonic s of that line

    async def finish(
        self,
        ctx: RequestContext,
        items: list[ReservedItem],
        settlement: Settlement,
        daily_counter: str | None,
        *,
        denial: Denial | None = None,
        settles_earlier: EarlierSettlement | None = None,
        ledger: tuple[str, list[LedgerEntry]] | None = None,
        count: ObjectCount | None = None,
    ) -> bool:
        """Settle the reservation and complete the row; True when it is known to be written as
        given (waited for and committed). A store failure here never hides the answer.

        What the answer taught about vendor objects (facts, what was counted) is durable before
        the answer is returned: the next request on the same object, on any replica, prices from
        it. So is a vendor's answer giving part of its reservation back (a declined card, a cost
        under the estimate): the spend left it reports is what the next call meets. When the store
        is down the answer goes back at once (the row stays in flight, which holds further writes on
        the object until it is written); waiting is bounded by LEDGER_WAIT_S either way.
        """
        row = ctx.row
        self._timings(ctx)
        settlement.apply_to(row)
        ctx.settled = True
        if denial is not None:
            row.error_code, row.reason, row.status = denial.code, _reason(denial), denial.status
            self._cap_hit(row, denial)
        if self.metrics is not None:
            self.metrics.reserved(row.vendor, row.reserved_usd)  # once: a request is finished once
        job = SettleJob(
            row, items, settlement, daily_counter, settles_earlier, ledger, _dedup_outcome(ctx, settlement), count=count
        )
        durable = ledger is not None or count is not None or (settles_earlier is not None and settles_earlier.count)
        frees = denial is None and settlement.forwarded and not settlement.keep_reservation  # see the docstring
        written = await self._submit(
            job, wait=bool(durable) or (frees and settlement.cost_usd < (row.reserved_usd or 0))
        )
        self._observe(row)
        return written

    async def _submit(self, job: SettleJob, *, wait: bool = False) -> bool:
        """To the settle writer (batched, retried until the store takes it), or straight to the store.

        `wait`: return once the job is committed (or LEDGER_WAIT_S passed, logged). Returns True
        when the job is known to be committed as given.
        """
        if self.settle is not None:
            done = self.settle(job)
            if wait:
                try:
                    return await asyncio.wait_for(asyncio.shield(done), LEDGER_WAIT_S)
                except TimeoutError:
                    event(
                        log,
                        "answer returned before its ledger update was written; the settle writer keeps trying",
                        logging.ERROR,
                        request_id=job.row.id,
                        key_id=job.row.key_id,
                    )
            return False
        try:
            await self.store.settle_many([job])
        except EnforcementUnavailable as exc:
            event(
                log,
                "settle failed; the row stays in_flight and is recovered as outcome_unknown",
                logging.ERROR,
                request_id=job.row.id,
                key_id=job.row.key_id,
                error=str(exc),
            )
            return False
        if self.metrics is not None:
            self.metrics.settled_job(job)
        return True

    async def release_unanswered(self, ctx: RequestContext, dedup: DedupCheck | None) -> None:
        """The reservation failed with no answer (the connection dropped at COMMIT): it may have
        landed. Nothing was forwarded, so whatever it holds is released, through the settle writer,
        which retries until the store is back; if it never landed, that finds nothing to do."""
        row = replace(ctx.row, verdict="denied_enforcement_unavailable", error_code="enforcement_unavailable")
        row.status, row.reason = 503, "The store failed while reserving; nothing was forwarded."
        settlement = Settlement("denied_enforcement_unavailable", 0, "none", "none", False, False)
        outcome = None
        if dedup is not None and row.key_id is not None:
            outcome = DedupOutcome(row.key_id, dedup.fingerprint, "release")
        await self._submit(SettleJob(row, [], settlement, None, dedup=outcome))

    async def refuse(
        self,
        ctx: RequestContext,
        items: list[ReservedItem],
        settlement: Settlement,
        daily_counter: str | None,
        refusal: Denial,
    ) -> ProxyResponse:
        """A request that was reserved but ends in a Keybrake answer: settle it, then render the refusal."""
        await self.finish(ctx, items, settlement, daily_counter, denial=refusal)
        return self.render_denial(ctx, refusal)

    async def deny(self, ctx: RequestContext, denial: Denial) -> ProxyResponse:
        row = ctx.row
        denial = with_mcp_hint(denial, row.path)
        row.verdict = denial.verdict
        row.error_code = denial.code
        row.reason = _reason(denial)
        row.status = denial.status
        self._cap_hit(row, denial)
        written = await self._write_unreserved(ctx)
        return self.render_denial(ctx, denial, written=written)

    async def replayed(self, ctx: RequestContext, first_id: str, status: int) -> None:
        """A duplicate inside the dedup window answered with the first request's answer: costs nothing."""
        row = ctx.row
        row.verdict, row.status, row.dedup_of = "deduplicated", status, first_id
        row.reason = f"duplicate of {first_id} inside the key's dedup window; its answer was replayed"
        await self._write_unreserved(ctx)

    async def _write_unreserved(self, ctx: RequestContext) -> bool:
        """Write the row of a request that reserved nothing; False if it could not be written."""
        ctx.stamp(self.store.now_ms(), fix=True)  # the row's first write: its id follows write order
        row = ctx.row
        row.cost_usd, row.reserved_usd, row.cost_source, row.cost_kind = 0, 0, "none", "none"
        self._timings(ctx)
        written = True
        if ctx.key is None and not ctx.well_formed_token and not self._admit_unauth_row(row):
            written = False
        else:
            try:
                await self.store.insert_audit(row)
            except EnforcementUnavailable as exc:
                written = False
                if exc.shed:
                    self._shed()
                else:
                    event(log, "could not write the audit row of an unforwarded request", logging.ERROR, error=str(exc))
        self._observe(row)
        return written

    def render_denial(self, ctx: RequestContext, denial: Denial, *, written: bool = True) -> ProxyResponse:
        resp = denial_response(
            denial,
            ctx.vendor,
            request_id=ctx.row.id if written else None,
            key_id=ctx.row.key_id,
            now_ms=self.store.now_ms(),
        )
        if written:
            resp.headers += self.keybrake_headers(ctx)
        else:
            resp.headers.append(("server-timing", _timing(ctx.row)))
        return resp

    async def crashed(self, ctx: RequestContext, exc: Exception) -> ProxyResponse:
        """An unexpected error on the request path: a recorded 503, never a lost row or a guess.

        Before the reservation, the row is written as a denial. After it, the reservation is
        released if nothing was sent, and kept (`outcome_unknown`) if the vendor may have acted —
        an SDK retry with the same Idempotency-Key then costs nothing and gets the vendor's answer.
        """
        ctx.stamp(self.store.now_ms(), fix=True)  # named in the log: the row written next keeps it
        event(
            log,
            "unexpected error on the request path; answered 503 enforcement_unavailable",
            logging.ERROR,
            request_id=ctx.row.id,
            key_id=ctx.row.key_id,
            error=f"{type(exc).__name__}: {redact(str(exc))[:300]}",
            stack="".join(traceback.format_tb(exc.__traceback__))[-4000:],
        )
        denial = Denial(
            "enforcement_unavailable",
            "Keybrake hit an internal error and could not finish enforcing this request"
            + (
                " after sending it; it may have been carried out: retry only with the same Idempotency-Key."
                if ctx.sent
                else "; nothing was forwarded. Retry shortly."
            ),
        )
        try:
            if ctx.reserved is None:
                return await self.deny(ctx, denial)
            if ctx.settled:
                return self.render_denial(ctx, denial)
            row = ctx.row
            if ctx.sent:
                settlement = Settlement(
                    "outcome_unknown",
                    row.reserved_usd,
                    "estimate",
                    row.cost_kind,
                    keep_reservation=True,
                    forwarded=True,
                )
            else:
                settlement = Settlement(denial.verdict, 0, "none", "none", keep_reservation=False, forwarded=False)
            return await self.refuse(ctx, ctx.reserved, settlement, ctx.daily_counter, denial)
        except Exception as again:  # recording failed too: the row is recovered if it was written
            event(log, "could not record an internal error", logging.ERROR, error=type(again).__name__)
            self._timings(ctx)
            resp = denial_response(
                denial, ctx.vendor, request_id=None, key_id=ctx.row.key_id, now_ms=self.store.now_ms()
            )
            resp.headers.append(("server-timing", _timing(ctx.row)))
            return resp

    def unavailable(self, ctx: RequestContext, exc: Exception) -> ProxyResponse:
        event(
            log,
            "enforcement unavailable: refused without forwarding",
            logging.ERROR,
            error=str(exc),
            key_id=ctx.row.key_id,
        )
        denial = Denial(
            "enforcement_unavailable",
            "Keybrake cannot reach its store, so it cannot enforce "
            "this key's policy; nothing was forwarded. Retry shortly.",
        )
        self._timings(ctx)
        row = ctx.row
        if self.metrics is not None:
            self.metrics.request(row.vendor, "enforcement_unavailable", 503, row.overhead_ms, row.upstream_latency_ms)
        resp = denial_response(denial, ctx.vendor, request_id=None, key_id=row.key_id, now_ms=self.store.now_ms())
        resp.headers.append(("server-timing", _timing(row)))
        return resp

    def keybrake_headers(self, ctx: RequestContext) -> list[tuple[str, str]]:
        """Keybrake's headers on an answer with an audit row, from the row's timings (`_timings`
        ran): request id, key id, `X-Keybrake-Overhead-Ms` (ms, one decimal) and `Server-Timing`
        (`keybrake;dur=<overhead_ms, 3 decimals>[, upstream;dur=<upstream_latency_ms>]`), and those
        of a call an approval let go (`core.approvals.approved_headers`)."""
        row = ctx.row
        out = [("x-keybrake-request-id", row.id), *([("x-keybrake-key-id", row.key_id)] if row.key_id else [])]
        out += [("x-keybrake-overhead-ms", f"{row.overhead_ms or 0:.1f}"), ("server-timing", _timing(row))]
        return out + approved_headers(row.approval)

    def _cap_hit(self, row: AuditRow, denial: Denial) -> None:
        if denial.cap is not None and self.metrics is not None:
            self.metrics.cap_hit(row.vendor, denial.cap.scope, denial.cap.name)

    def _shed(self) -> None:
        """A denial's row not written because the store's denial queue was full (a flood of
        denials): counted in the metric and logged as a rate, at most one line per SHED_LOG_S."""
        if self.metrics is not None:
            self.metrics.shed.inc()
        self._shed_n += 1
        now = time.monotonic()
        if now - self._shed_logged >= SHED_LOG_S:
            event(
                log,
                "denial audit rows shed: the store's denial queue is full (a flood of denials)",
                logging.WARNING,
                shed=self._shed_n,
                since_s=round(min(now - self._shed_logged, 1e6), 1),
            )
            self._shed_n, self._shed_logged = 0, now

    def _admit_unauth_row(self, row: AuditRow) -> bool:
        """Rows for requests without a well-formed token are rate-limited (docs/api.md, audit rows)."""
        second = row.ts // 1000
        if second != self._unauth_second:
            if self._unauth_suppressed:
                row.metadata = {"suppressed": self._unauth_suppressed}
                row.reason = f"{self._unauth_suppressed} requests without a well-formed vault key were not recorded"
            self._unauth_second, self._unauth_count, self._unauth_suppressed = second, 0, 0
        self._unauth_count += 1
        if self._unauth_count > self.settings.unauth_audit_rate:
            self._unauth_suppressed += 1
            return False
        return True

    def _timings(self, ctx: RequestContext) -> None:
        total = (time.perf_counter() - ctx.started) * 1000
        ctx.row.latency_ms = round(total, 3)
        ctx.row.upstream_latency_ms = round(ctx.upstream_ms, 3) if ctx.upstream_ms else None
        ctx.row.overhead_ms = round(total - ctx.upstream_ms, 3)

    def _observe(self, row: AuditRow) -> None:
        # The audit table is the per-request record; the log carries denials and failures at INFO.
        level = logging.DEBUG if row.verdict == "allowed" else logging.INFO
        if log.isEnabledFor(level):
            self._log_row(row, level)
        if self.metrics is not None:
            self.metrics.request(row.vendor, row.verdict, row.status or 0, row.overhead_ms, row.upstream_latency_ms)

    @staticmethod
    def _log_row(row: AuditRow, level: int) -> None:
        event(
            log,
            "proxied",
            request_id=row.id,
            key_id=row.key_id,
            vendor=row.vendor,
            method=row.method,
            path=row.path,
            verdict=row.verdict,
            status=row.status,
            cost_usd=format_usd(row.cost_usd),
            overhead_ms=row.overhead_ms,
            level=level,
        )


def _dedup_outcome(ctx: RequestContext, settlement: Settlement) -> DedupOutcome | None:
    """How the dedup entry this request opened ends: replayable, unknown, or gone (nothing sent)."""
    if ctx.dedup_fingerprint is None or ctx.key is None:
        return None
    if settlement.verdict == "allowed" and ctx.dedup_answer is not None:
        return DedupOutcome(ctx.key.id, ctx.dedup_fingerprint, "answered", ctx.dedup_answer)
    if settlement.verdict == "outcome_unknown":
        return DedupOutcome(ctx.key.id, ctx.dedup_fingerprint, "unknown")
    return DedupOutcome(ctx.key.id, ctx.dedup_fingerprint, "release")


def _timing(row: AuditRow) -> str:
    return server_timing(row.overhead_ms, row.upstream_latency_ms)


def _reason(denial: Denial) -> str:
    """The audit reason: what the agent was told, plus what only the operator may read."""
    return (denial.message + (f" [operator: {denial.detail}]" if denial.detail else ""))[:1000]
