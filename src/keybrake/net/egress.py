"""Where upstream connections may go (docs/operations.md, upstream hosts).

`EgressRules` applies the URL rules (`keybrake.core.upstream_url`) of the running process to
every URL a vendor secret is about to be sent to, whatever was accepted when the credential
was written. Then every new connection resolves the vendor host and refuses non-public addresses — loopback,
private, link-local, CGNAT, multicast, unspecified — unless that exact host is listed in
`KEYBRAKE_UPSTREAM_HOSTS`. A DNS answer that sends api.stripe.com to 10.0.0.5 is an attack
or a misconfiguration; either way the real secret must not follow it.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from keybrake.config import Settings
from keybrake.core.upstream_url import url_refusal

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class ForbiddenAddress(OSError):
    """The host resolved only to addresses Keybrake will not send a vendor secret to."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return False
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved
    )


class GuardedResolver(AbstractResolver):
    def __init__(self, explicit_hosts: tuple[str, ...], inner: AbstractResolver | None = None) -> None:
        # Only exact entries are explicit; "*." suffix entries still get the public-address check.
        self._explicit = frozenset(h.lower() for h in explicit_hosts if not h.startswith("*."))
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower() in self._explicit:
            return results
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise ForbiddenAddress(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


class EgressRules:
    """The URL rules under this process's settings, with verdicts cached per (vendor, URL).

    Settings never change during a process's life, so a verdict is a fact for that life; the
    cache is bounded (cleared past 10,000 entries).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._verdicts: dict[tuple[str, tuple[str, ...], str], str | None] = {}

    def refusal(self, url: str, vendor: str, vendor_hosts: tuple[str, ...]) -> str | None:
        """Why a `vendor` secret may not be sent to `url` now (a sentence), or None if it may."""
        cache_key = (vendor, vendor_hosts, url)
        if cache_key in self._verdicts:
            return self._verdicts[cache_key]
        verdict = url_refusal(
            url,
            allowed_hosts=vendor_hosts,
            listed_hosts=self._settings.upstream_hosts,
            allow_insecure=self._settings.allow_insecure_upstream,
            vendor=vendor,
        )
        if len(self._verdicts) > 10_000:
            self._verdicts.clear()
        self._verdicts[cache_key] = verdict
        return verdict
