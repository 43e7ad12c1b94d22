"""Keybrake's client: the admin API, per-run vault keys, and reading denials out of vendor SDK errors.

    from keybrake_client import Keybrake, denial

    with Keybrake("http://127.0.0.1:8080", admin_token) as kb:
        with kb.run(vendor="stripe", run_id="run-8f3c", daily_usd_cap=25) as run:
            stripe = run.stripe()
            try:
                stripe.v1.payment_intents.create({...}, {"idempotency_key": run.idempotency_key("pay")})
            except Exception as exc:
                d = denial(exc)   # Denial(code="spend_cap_exceeded", kind="cap", retryable=False, …) or None
        print(run.spend().gross_usd, len(run.audit()))

Docs: docs/client.md in the Keybrake repository.
"""

from keybrake_client.aio import AsyncKeybrake
from keybrake_client.client import Keybrake
from keybrake_client.denial import Denial, denial
from keybrake_client.errors import KeybrakeAPIError, KeybrakeConnectionError, KeybrakeError
from keybrake_client.run import AsyncRun, Run, idempotency_key

__all__ = [
    "AsyncKeybrake",
    "AsyncRun",
    "Denial",
    "Keybrake",
    "KeybrakeAPIError",
    "KeybrakeConnectionError",
    "KeybrakeError",
    "Run",
    "denial",
    "idempotency_key",
]
