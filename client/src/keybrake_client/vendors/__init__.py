"""Official vendor SDKs pointed at Keybrake's proxy with a vault key.

Each factory imports its SDK only when called, so `keybrake_client` itself needs neither: install
the vendor's extra (`pip install './client[stripe]'`, `[twilio]`, `[resend]`, `[shopify]`,
`[postmark]`, `[sendgrid]`, `[segment]`). `proxy_url` is Keybrake's base URL (e.g.
`http://127.0.0.1:8080`); the SDK reaches `{proxy_url}/{vendor}/…`. Twilio, Shopify and Postmark
need more than a base URL: their helpers live in `keybrake_client.vendors.twilio`, `.shopify`,
`.postmark`.
"""

from __future__ import annotations

from typing import Any


def prefix(proxy_url: str, vendor: str) -> str:
    """`{proxy_url}/{vendor}`: where the vendor's API is reached through Keybrake."""
    if not proxy_url.startswith(("http://", "https://")):
        raise ValueError(f"proxy_url must be an http(s) URL such as http://127.0.0.1:8080, not {proxy_url!r}")
    return f"{proxy_url.rstrip('/')}/{vendor}"


def stripe_client(proxy_url: str, vault_key: str, **kwargs: Any) -> Any:
    """A `stripe.StripeClient` whose API calls go to `{proxy_url}/stripe` with `vault_key`.

    `kwargs`: StripeClient's own (`max_network_retries`, `http_client`, `stripe_account`, …);
    `base_addresses` is set here and cannot be given."""
    import stripe

    if "base_addresses" in kwargs:
        raise TypeError("base_addresses is set by keybrake_client and cannot be given")
    return stripe.StripeClient(vault_key, base_addresses={"api": prefix(proxy_url, "stripe")}, **kwargs)


def configure_resend(proxy_url: str, vault_key: str) -> Any:
    """Point the `resend` module at `{proxy_url}/resend` with `vault_key` and return the module.

    resend-python is configured process-wide (`resend.api_key`, `resend.api_url`): one run's key
    at a time per process."""
    import resend

    resend.api_key = vault_key
    resend.api_url = prefix(proxy_url, "resend")
    return resend


def sendgrid_client(proxy_url: str, vault_key: str) -> Any:
    """A `sendgrid.SendGridAPIClient` whose calls go to `{proxy_url}/sendgrid` with `vault_key`."""
    from sendgrid import SendGridAPIClient

    return SendGridAPIClient(vault_key, host=prefix(proxy_url, "sendgrid"))


def segment_client(proxy_url: str, vault_key: str, **kwargs: Any) -> Any:
    """A `segment.analytics.Client` (the vault key is its write key) sending to `{proxy_url}/segment`.

    `kwargs`: the Client's own (`sync_mode`, `max_retries`, `on_error`, …); `host` is set here."""
    from segment.analytics import Client

    if "host" in kwargs:
        raise TypeError("host is set by keybrake_client and cannot be given")
    return Client(vault_key, host=prefix(proxy_url, "segment"), **kwargs)
