"""The scripted agent's loop and what each attempt got back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from keybrake.demo.scenarios import Call


@dataclass(frozen=True)
class Attempt:
    """One call of the loop: its 1-based number, the HTTP `status`, Keybrake's error `code` (None
    when the vendor answered), the `message` shown to the agent, the audit row id Keybrake answered
    with (`X-Keybrake-Request-Id`, None without Keybrake) and the answer's JSON document."""

    number: int
    status: int
    code: str | None
    message: str
    request_id: str | None
    doc: Any

    @property
    def through(self) -> bool:
        """The vendor accepted it (2xx): the money moved."""
        return 200 <= self.status < 300


def denial_code(doc: Any) -> tuple[str | None, str]:
    """(Keybrake's error code, message) of a denial in the vendor's error shape: Stripe's
    `error.code`, Twilio's `details.keybrake_code`, Resend's `name` (next to `keybrake`);
    (None, vendor message) for a vendor's own error."""
    if not isinstance(doc, dict):
        return None, ""
    err = doc.get("error")
    if isinstance(err, dict):
        kb = err.get("keybrake")
        return (str(err.get("code")) if isinstance(kb, dict) else None), str(err.get("message", ""))
    if isinstance(doc.get("keybrake"), dict) and isinstance(doc.get("name"), str):  # Resend's shape
        return doc["name"], str(doc.get("message", ""))
    details = doc.get("details")
    if isinstance(details, dict) and isinstance(details.get("keybrake_code"), str):
        return details["keybrake_code"], str(doc.get("message", ""))
    return None, str(doc.get("message", ""))


async def attempt(session: aiohttp.ClientSession, base_url: str, call: Call, number: int) -> Attempt:
    """Send `call` below `base_url` once; raises aiohttp.ClientError when no answer arrives."""
    async with session.request(call.method, base_url + call.path, data=call.body, headers=call.headers) as resp:
        try:
            doc = await resp.json(content_type=None)
        except ValueError:
            doc = None
        code, message = denial_code(doc) if resp.status >= 400 else (None, "")
        return Attempt(number, resp.status, code, message, resp.headers.get("X-Keybrake-Request-Id"), doc)


async def run_loop(
    attempts: int,
    send: Callable[[int], Awaitable[Attempt]],
    seen: Callable[[Attempt], Awaitable[None]] | None = None,
) -> list[Attempt]:
    """The runaway loop: `attempts` sends, whatever each answers (the agent ignores refusals)."""
    out = []
    for n in range(1, attempts + 1):
        result = await send(n)
        out.append(result)
        if seen is not None:
            await seen(result)
    return out
