"""twilio-python through Keybrake.

twilio-python has no base-URL option, so this module ships an HTTP client that sends what the
SDK addresses to `https://api.twilio.com` to `{proxy_url}/twilio` instead, and refuses to send
anything (and so the vault key) to any other Twilio host::

    from keybrake_client.vendors.twilio import client
    twilio = client("http://127.0.0.1:8080", "vault_key_…")
    twilio.messages.create(to="+14155550100", from_="+14155550199", body="hi")

The Account SID in the SDK's paths is the vault key's id (`vk_…`), which Keybrake replaces with
the credential's real SID; without `account_sid` the helper asks Keybrake for it once
(`GET /_keybrake/self`). Requires the `twilio` extra (`pip install './client[twilio]'`): twilio-python
and requests, on which twilio-python's HTTP client is built.
"""

from __future__ import annotations

from typing import Any

import httpx
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

TWILIO_API = "https://api.twilio.com"


class KeybrakeTwilioError(RuntimeError):
    """The helper refused a request or could not learn the key's id."""


class KeybrakeHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """A `TwilioHttpClient` whose requests to api.twilio.com go to Keybrake's `/twilio` prefix."""

    def __init__(self, proxy_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = proxy_url.rstrip("/") + "/twilio"

    def rewrite(self, url: str) -> str:
        if url == TWILIO_API or url.startswith(TWILIO_API + "/"):
            return self.base + url[len(TWILIO_API) :]
        raise KeybrakeTwilioError(
            f"{url.split('?')[0]} is not on api.twilio.com: only Twilio's 2010 REST API goes through Keybrake, "
            "and the vault key is never sent anywhere else (do not set region or edge on this client)"
        )

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)


def key_id(proxy_url: str, vault_key: str, *, timeout: float = 10.0) -> str:
    """The id (`vk_…`) of a vault key, asked of Keybrake itself (`timeout` in seconds).

    Raises KeybrakeTwilioError when Keybrake refuses the key (revoked, expired, unknown)."""
    resp = httpx.get(
        proxy_url.rstrip("/") + "/_keybrake/self",
        headers={"Authorization": f"Bearer {vault_key}"},
        timeout=timeout,
        follow_redirects=False,
    )
    if resp.status_code != 200:
        raise KeybrakeTwilioError(f"Keybrake refused the vault key ({resp.status_code}): {resp.text[:300]}")
    return str(resp.json()["id"])


def client(proxy_url: str, vault_key: str, account_sid: str | None = None, *, timeout: float | None = None) -> Client:
    """A ready `twilio.rest.Client` whose every request goes through Keybrake with `vault_key`.

    `account_sid`: the key id (`vk_…`) or the credential's real Account SID; looked up if absent.
    """
    sid = account_sid or key_id(proxy_url, vault_key)
    http = KeybrakeHttpClient(proxy_url, timeout=timeout)
    return Client(username=sid, password=vault_key, account_sid=sid, http_client=http)
