"""Per-run vault keys: issue on entry, revoke on every way out (docs/client.md, per-run keys)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from keybrake_client import models as m
from keybrake_client import vendors
from keybrake_client.errors import KeybrakeError

if TYPE_CHECKING:
    from keybrake_client.aio import AsyncKeybrake
    from keybrake_client.client import Keybrake

MAX_REASON = 500
SHOPIFY_API_VERSION = "2025-07"  # run.shopify()'s default Admin API version


@dataclass(frozen=True)
class RunSpec:
    """What `run()` issues: vendor, run id, label, policy, TTL, credential, metadata."""

    vendor: str
    run_id: str
    label: str | None
    policy: dict[str, Any]
    ttl: str | int
    credential: str | None
    metadata: dict[str, str]


def run_spec(
    vendor: str,
    run_id: str,
    label: str | None,
    policy: Mapping[str, Any] | None,
    ttl: str | int,
    credential: str | None,
    metadata: Mapping[str, str] | None,
    caps: Mapping[str, Any],
) -> RunSpec:
    """Check and merge `run()`'s arguments. Raises ValueError naming what is wrong."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise ValueError("run_id must be a non-empty string (the agent run's id)")
    if not isinstance(vendor, str) or not vendor:
        raise ValueError("vendor must be a vendor name such as 'stripe'")
    both = sorted(set(policy or {}) & set(caps))
    if both:
        raise ValueError(f"{', '.join(both)} given both in policy and as a keyword: give it once")
    meta = dict(metadata or {})
    if "agent_run_id" in meta and meta["agent_run_id"] != run_id:
        raise ValueError("metadata.agent_run_id is set from run_id: do not give another")
    meta["agent_run_id"] = run_id
    return RunSpec(vendor, run_id, label, {**(policy or {}), **caps}, ttl, credential, meta)


def idempotency_key(run_id: str, step: str) -> str:
    """`Idempotency-Key` for one step of a run: the same run id and step always give the same key
    (a retried step cannot charge twice), different ones never collide in practice.
    `kb_` + 48 hex characters (SHA-256 of the run id and step), valid for every vendor."""
    if not step:
        raise ValueError("step must be a non-empty string naming the step (e.g. 'charge-order-42')")
    digest = hashlib.sha256(f"{len(run_id)}:{run_id}\0{step}".encode()).hexdigest()
    return f"kb_{digest[:48]}"


# SDKs configured process-wide (resend) or per thread (ShopifyAPI; every asyncio task of the
# thread shares it): the live run whose vault key each holds. A second live run configuring one
# would hand the first run's agent its key (the other run's policy, alive after the first run's
# revoke), so it is refused until the holder's block ends.
_HOLDERS: dict[tuple[str, int | None], Run] = {}
_HOLDERS_LOCK = threading.Lock()


def _hold(run: Run, sdk: str, *, per_thread: bool) -> None:
    slot = (sdk, threading.get_ident() if per_thread else None)
    with _HOLDERS_LOCK:
        if run._ended:
            # Its block is over: held again, nothing would ever free the SDK for later runs.
            raise KeybrakeError(f"run {run.run_id} ({run.key.id}) has ended: it cannot configure {sdk} again")
        holder = _HOLDERS.get(slot)
        if holder is not None and holder is not run:
            where = "this thread" if per_thread else "this process"
            raise KeybrakeError(
                f"{sdk} is configured once for {where} and run {holder.run_id} ({holder.key.id}) still holds it: "
                f"one run at a time may use {sdk} there (its agent would otherwise call with this run's key)"
            )
        _HOLDERS[slot] = run


def _release(run: Run) -> None:
    """At the end of `run`'s block: free the SDKs it held (they keep its key, now revoked: a late
    call is refused as `key_revoked`)."""
    with _HOLDERS_LOCK:
        run._ended = True
        for slot in [slot for slot, holder in _HOLDERS.items() if holder is run]:
            del _HOLDERS[slot]


def _reason(run_id: str, exc: BaseException | None) -> str:
    if exc is None:
        why = "run finished"
    elif isinstance(exc, asyncio.CancelledError):
        why = "run cancelled"
    elif isinstance(exc, Exception):
        why = f"run failed: {type(exc).__name__}"
    else:
        why = f"run interrupted: {type(exc).__name__}"
    return f"{why} ({run_id})"[:MAX_REASON]


class Run:
    """One agent run's vault key and the vendor SDKs pointed at the proxy with it.

    `key`: the issued key (`.id` `vk_…`, `.secret` `vault_key_…`); `run_id`; `vendor`;
    `proxy_url`; `revoked`: True once the run's block has ended and the key is revoked. The
    factories import the vendor's SDK only when called (install its extra).
    """

    def __init__(self, key: m.IssuedKey, spec: RunSpec, proxy_url: str, admin: Keybrake | None) -> None:
        self.key = key
        self.run_id = spec.run_id
        self.vendor = spec.vendor
        self.label = spec.label
        self.proxy_url = proxy_url
        self.revoked = False
        self._admin = admin
        self._ended = False  # its block has ended (set under _HOLDERS_LOCK): it may hold no SDK again

    def __repr__(self) -> str:  # never the token
        return f"Run(run_id={self.run_id!r}, key={self.key.id!r}, vendor={self.vendor!r}, revoked={self.revoked})"

    def idempotency_key(self, step: str) -> str:
        """The `Idempotency-Key` for `step` of this run (see `keybrake_client.run.idempotency_key`)."""
        return idempotency_key(self.run_id, step)

    # -- vendor SDKs -------------------------------------------------------------------------

    def stripe(self, **kwargs: Any) -> Any:
        """A `stripe.StripeClient` on the proxy with this run's key (`kwargs`: StripeClient's)."""
        return vendors.stripe_client(self.proxy_url, self.key.secret, **kwargs)

    def twilio(self, *, timeout: float | None = None) -> Any:
        """A `twilio.rest.Client` on the proxy with this run's key (its Account SID is the key id)."""
        from keybrake_client.vendors.twilio import client

        return client(self.proxy_url, self.key.secret, self.key.id, timeout=timeout)

    def resend(self) -> Any:
        """The `resend` module pointed at the proxy with this run's key (process-wide setting: one
        live run at a time per process; raises KeybrakeError while another run's block holds it, and
        once this run's block has ended)."""
        _hold(self, "resend", per_thread=False)
        return vendors.configure_resend(self.proxy_url, self.key.secret)

    def shopify(self, api_version: str = SHOPIFY_API_VERSION) -> Any:
        """The `shopify` module with its resources and `shopify.GraphQL()` pointed at the proxy with
        this run's key for `api_version` ("2025-07" unless given: pass the version your code is
        written against); per thread, like ShopifyAPI's sessions: one live run at a time per thread
        (asyncio tasks share theirs), else KeybrakeError; KeybrakeError too once this run's block has ended."""
        import shopify

        from keybrake_client.vendors.shopify import activate

        _hold(self, "shopify", per_thread=True)
        activate(self.proxy_url, self.key.secret, api_version)
        return shopify

    def postmark(self, **kwargs: Any) -> Any:
        """A postmarker client on the proxy with this run's key (`kwargs`: max_retries, timeout, …)."""
        from keybrake_client.vendors.postmark import client

        return client(self.proxy_url, self.key.secret, **kwargs)

    def sendgrid(self) -> Any:
        """A `sendgrid.SendGridAPIClient` on the proxy with this run's key."""
        return vendors.sendgrid_client(self.proxy_url, self.key.secret)

    def segment(self, **kwargs: Any) -> Any:
        """A `segment.analytics.Client` on the proxy, this run's key as its write key."""
        return vendors.segment_client(self.proxy_url, self.key.secret, **kwargs)

    # -- after the run -----------------------------------------------------------------------

    def _sync_admin(self) -> Keybrake:
        if self._admin is None:
            raise KeybrakeError("this run belongs to an AsyncKeybrake: await run.audit() / run.spend()")
        return self._admin

    def audit(self) -> list[m.AuditRow]:
        """Every audit row of this run's key, oldest first (all pages)."""
        rows = list(self._sync_admin().iter_audit(key_id=self.key.id))
        rows.reverse()
        return rows

    def spend(self) -> m.SpendGroup:
        """This run's key's spend (`GET /v1/spend` grouped by key, from the key's creation)."""
        report = self._sync_admin().spend(
            _spend_since(self.key), group_by="key", label_prefix=self.label, vendor=self.vendor
        )
        return pick_group(report, self.key.id)


def _spend_since(key: m.Key) -> int:
    return int((key.created_at - timedelta(seconds=1)).timestamp())


def pick_group(report: m.SpendReport, key_id: str) -> m.SpendGroup:
    """The key's group of a by-key report, or an all-zero group when it spent nothing."""
    for group in report.data:
        if group.group == key_id:
            return group
    zero = Decimal(0)
    return m.SpendGroup(
        group=key_id,
        charged_usd=zero,
        refunded_usd=zero,
        gross_usd=zero,
        net_usd=zero,
        requests=0,
        denied=0,
        cap_hits=0,
    )


def _revoke_failed(run: Run, exc: BaseException, pending: BaseException | None) -> None:
    note = f"keybrake: revoking {run.key.id} at the end of run {run.run_id} failed: {exc} (it expires on its own)"
    if pending is not None:
        pending.add_note(note)  # never hide the run's own exception
        return
    raise KeybrakeError(note) from exc


class RunContext:
    """`with kb.run(...) as run:` — issues the key on entry, revokes it on exit."""

    def __init__(self, admin: Keybrake, spec: RunSpec) -> None:
        self._admin = admin
        self._spec = spec
        self._run: Run | None = None

    def __enter__(self) -> Run:
        s = self._spec
        key = self._admin.issue_key(
            s.vendor, policy=s.policy, label=s.label, credential=s.credential, expires_in=s.ttl, metadata=s.metadata
        )
        self._run = Run(key, s, self._admin.proxy_url, self._admin)
        return self._run

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        run = self._run
        assert run is not None
        try:
            self._admin.revoke_key(run.key.id, _reason(run.run_id, exc))
            run.revoked = True
        except Exception as failure:
            _revoke_failed(run, failure, exc)
        finally:
            _release(run)


class AsyncRun(Run):
    """The `Run` of `async with akb.run(...)`: `await run.audit()`, `await run.spend()`."""

    def __init__(self, key: m.IssuedKey, spec: RunSpec, proxy_url: str, admin: AsyncKeybrake) -> None:
        super().__init__(key, spec, proxy_url, None)
        self._async_admin = admin

    async def audit(self) -> list[m.AuditRow]:  # type: ignore[override]
        """Every audit row of this run's key, oldest first (all pages)."""
        rows = [row async for row in self._async_admin.iter_audit(key_id=self.key.id)]
        rows.reverse()
        return rows

    async def spend(self) -> m.SpendGroup:  # type: ignore[override]
        """This run's key's spend (`GET /v1/spend` grouped by key, from the key's creation)."""
        report = await self._async_admin.spend(
            _spend_since(self.key), group_by="key", label_prefix=self.label, vendor=self.vendor
        )
        return pick_group(report, self.key.id)


class AsyncRunContext:
    """`async with akb.run(...) as run:` — issues on entry, revokes on exit, also when cancelled."""

    def __init__(self, admin: AsyncKeybrake, spec: RunSpec) -> None:
        self._admin = admin
        self._spec = spec
        self._run: AsyncRun | None = None

    async def __aenter__(self) -> AsyncRun:
        s = self._spec
        key = await self._admin.issue_key(
            s.vendor, policy=s.policy, label=s.label, credential=s.credential, expires_in=s.ttl, metadata=s.metadata
        )
        self._run = AsyncRun(key, s, self._admin.proxy_url, self._admin)
        return self._run

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        run = self._run
        assert run is not None
        # Shielded: a second cancellation while revoking cannot stop the revoke itself.
        revoke = asyncio.ensure_future(self._admin.revoke_key(run.key.id, _reason(run.run_id, exc)))
        try:
            await asyncio.shield(revoke)
            run.revoked = True
        except asyncio.CancelledError:
            await asyncio.wait([revoke])  # finish the revoke, then let the cancellation through
            run.revoked = revoke.exception() is None
            raise
        except Exception as failure:
            _revoke_failed(run, failure, exc)
        finally:
            _release(run)
