"""HTTP client CPU per request (µs), on this process's uvloop, against bench/fake_upstream.py.

    .venv/bin/python bench/client_cpu.py [--requests N] [--concurrency C] [--rounds R] [variant ...]

Variants: `keybrake` (net.upstream.AiohttpUpstream as the proxy uses it: guarded resolver,
its connector and session settings), `aiohttp-nocleanup|nolimit|notimeout` (one setting changed),
and, when pyreqwest is installed (`pip install pyreqwest==0.15.1`; not a Keybrake dependency),
`pyreqwest` (no egress check) and `pyreqwest-pinned` (the egress check kept by pinning each
host to its checked address). Default: keybrake, plus the pyreqwest ones if installed.
Each round runs every variant once, in order, for N requests with C in flight;
the figure is the process's CPU time (user + system, every thread: pyreqwest's Tokio runtime
runs on its own thread) per request, best round. The upstream runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).parent))
import tempfile

from children import start_fake_upstream

SECRET = "sk_test_client_cpu_0123456789"
BODY = b"amount=100&currency=usd&customer=cus_bench"
HEADERS = [("content-type", "application/x-www-form-urlencoded"), ("authorization", f"Bearer {SECRET}")]

Send = Callable[[], Awaitable[int]]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _keybrake(url: str, tweak: str = "") -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp

    from keybrake.core.upstream import UpstreamRequest
    from keybrake.net.egress import GuardedResolver
    from keybrake.net.upstream import AiohttpUpstream

    up = AiohttpUpstream(
        timeout_s=30, connect_timeout_s=5, max_response_bytes=10_000_000, explicit_hosts=("127.0.0.1",)
    )
    if tweak:
        # the session AiohttpUpstream builds, with one setting changed
        connector = {"limit": 256, "ttl_dns_cache": 30, "enable_cleanup_closed": True}
        session: dict[str, object] = {"timeout": up._timeout}
        if tweak == "nocleanup":
            connector["enable_cleanup_closed"] = False
        elif tweak == "nolimit":
            connector["limit"] = 0
        elif tweak == "notimeout":
            session["timeout"] = aiohttp.ClientTimeout(total=None)
        up._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(("127.0.0.1",)), **connector),  # type: ignore[arg-type]
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
            **session,  # type: ignore[arg-type]
        )
    req = UpstreamRequest("POST", url, [*HEADERS, ("accept-encoding", "identity")], BODY)

    async def send() -> int:
        return (await up.send(req)).status

    return send, up.close


def _pyreqwest_builder() -> Any:
    """pyreqwest's client builder set as the proxy would use it: no redirects, no decompression,
    no Referer, 30 s total and 5 s connect timeouts."""
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    return (
        ClientBuilder()
        .follow_redirects(False)
        .gzip(False)
        .brotli(False)
        .zstd(False)
        .deflate(False)
        .referer(False)
        .timeout(timedelta(seconds=30))
        .connect_timeout(timedelta(seconds=5))
    )


async def _pyreqwest(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    client = (
        _pyreqwest_builder().resolve("upstream.test", "127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])).build()
    )
    target = url.replace("127.0.0.1", "upstream.test")

    async def send() -> int:
        resp = await client.request("POST", target).headers(HEADERS).body_bytes(BODY).build().send()
        body = await resp.bytes()
        headers = list(resp.headers.items())
        assert body and headers
        return int(resp.status)

    return send, client.close


async def _pyreqwest_pinned(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """pyreqwest with the egress guard kept: the host is resolved and checked by Keybrake's
    GuardedResolver, and the client for (host, port) is built pinned to that checked address
    (`resolve(host, ip, port)`, so the URL's host still gives SNI and Host), rebuilt after 30 s
    (aiohttp's DNS cache TTL). The cost of this design per request, not a Keybrake client."""
    import socket
    import time
    from urllib.parse import urlsplit

    from pyreqwest.client import Client

    from keybrake.net.egress import GuardedResolver

    resolver = GuardedResolver(("127.0.0.1",))
    clients: dict[tuple[str, int], tuple[float, Client]] = {}

    async def client_for(target: str) -> Client:
        parts = urlsplit(target)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        entry = clients.get((host, port))
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        checked = await resolver.resolve(host, port, socket.AF_INET)  # raises ForbiddenAddress
        client = _pyreqwest_builder().no_proxy().resolve(host, checked[0]["host"], port).build()
        clients[(host, port)] = (time.monotonic() + 30, client)
        if entry is not None:
            await entry[1].close()
        return client

    async def send() -> int:
        client = await client_for(url)
        resp = await client.request("POST", url).headers(HEADERS).body_bytes(BODY).build().send()
        body = await resp.bytes()
        headers = list(resp.headers.items())
        assert body and headers
        return int(resp.status)

    async def close() -> None:
        for _, c in clients.values():
            await c.close()

    return send, close


VARIANTS = {
    "pyreqwest-pinned": _pyreqwest_pinned,
    "keybrake": _keybrake,
    "pyreqwest": _pyreqwest,
    "aiohttp-nocleanup": lambda url: _keybrake(url, "nocleanup"),
    "aiohttp-nolimit": lambda url: _keybrake(url, "nolimit"),
    "aiohttp-notimeout": lambda url: _keybrake(url, "notimeout"),
}


async def _run(
    make: Callable[[str], Awaitable[tuple[Send, Callable[[], Awaitable[None]]]]], url: str, n: int, c: int
) -> float:
    send, close = await make(url)
    for _ in range(50):  # warm: connections open, code paths hot
        assert await send() == 200
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await send()
            assert status == 200, status

    started = _cpu()
    await asyncio.gather(*(worker() for _ in range(c)))
    used = _cpu() - started
    await close()
    return used / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    found = importlib.util.find_spec("pyreqwest") is not None  # not a Keybrake dependency: pip install it to compare
    ap.add_argument("variants", nargs="*", default=["keybrake"] + (["pyreqwest", "pyreqwest-pinned"] if found else []))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        child, base = start_fake_upstream(SECRET, Path(tmp), 20)
        try:
            _measure(args, f"{base}/v1/charges")
        finally:
            child.stop()


def _measure(args: argparse.Namespace, url: str) -> None:
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for name in args.variants:
            us = uvloop.run(_run(VARIANTS[name], url, args.requests, args.concurrency))
            best[name] = min(best.get(name, 1e9), us)
            print(f"round {r + 1} {name:12s} {us:7.1f} µs CPU/request", flush=True)
    for name, us in best.items():
        print(f"best {name:12s} {us:7.1f} µs CPU/request")


if __name__ == "__main__":
    main()
