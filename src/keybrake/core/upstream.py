"""What goes to a vendor and what comes back, as plain data, and the one-method `Upstream`
interface the proxy and the jobs send through (its client is `keybrake.net.upstream`). Pure.

The two failure exceptions carry the distinction settlement depends on (docs/policy.md,
settlement): nothing was sent (release the reservation) versus sent without a definite answer
(keep it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed_ms: float


class UpstreamUnreachable(Exception):
    """The connection failed before any byte of the request was sent."""


class UpstreamForbidden(Exception):
    """The vendor host resolved to an address Keybrake refuses to send secrets to; nothing was sent."""


class UpstreamOutcomeUnknown(Exception):
    """The request may have reached the vendor, but no definite answer came back."""

    def __init__(self, message: str, *, timeout: bool, elapsed_ms: float) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.elapsed_ms = elapsed_ms


class Upstream(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...
    async def close(self) -> None: ...
