"""CPU per Stripe payment through the MCP front against the same payment as a plain proxied call,
in the same run: KeybrakeApp over ASGI in this process (no sockets), a canned Stripe answer,
SQLite in a temp dir.

    .venv/bin/python bench/mcp_calls.py [--requests N] [--concurrency C] [--rounds R]

Each round sends N `POST /stripe/v1/payment_intents` (form body, Idempotency-Key, as
stripe-python sends it) and N MCP `tools/call stripe_create_payment_intent` (JSON-RPC to
`/_keybrake/mcp`, as the `mcp` SDK's client sends it, stateless), alternating blocks, and prints
the process's CPU per request of each (every thread: the event loop and the SQLite writer); then
the best of each and the difference, which is what the MCP front adds to a call.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from inproc_cpu import (  # the in-process ASGI call (this script's directory is on sys.path)
    ADMIN,
    Canned,
    _call,
    _provision,
)

PI = {"object": "payment_intent", "amount": 100, "currency": "usd", "status": "succeeded", "customer": None,
      "amount_received": 100, "capture_method": "automatic", "latest_charge": "ch_1"}  # fmt: skip


async def _round(app: Any, send: Any, n: int, c: int) -> float:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send(left)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker() for _ in range(c)))
    await app.settler.flush(10)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    return (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / n * 1e6


MODERN, LEGACY = "2026-07-28", "2025-06-18"


async def _main(n: int, c: int, rounds: int, protocol: str) -> None:
    from keybrake.app import KeybrakeApp
    from keybrake.config import from_env
    from keybrake.runtime import ensure_admin_token, open_runtime

    with tempfile.TemporaryDirectory() as tmp:
        rt = await open_runtime(from_env().with_overrides(data_dir=Path(tmp)), create=True)
        await ensure_admin_token(rt)
        app = KeybrakeApp(rt, upstream=Canned(PI, "pi"))
        await app.startup()
        token = await _provision(app, {"daily_usd_cap": 100_000_000})
        serial = itertools.count()

        async def proxied(i: int) -> None:
            body = f"amount=100&currency=usd&payment_method=pm_card_visa&confirm=true&metadata[order]={i}".encode()
            headers = [
                ("authorization", f"Bearer {token}"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("idempotency-key", f"bench-{next(serial)}"),
                ("content-length", str(len(body))),
            ]
            status, out = await _call(app, "POST", "/stripe/v1/payment_intents", headers, body)
            assert status == 200, out

        async def tool_call(i: int) -> None:
            args = {"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
            params: dict[str, Any] = {
                "name": "stripe_create_payment_intent",
                "arguments": {**args, "metadata": {"order": str(i)}},
            }
            if protocol == MODERN:  # the per-request envelope the `mcp` SDK's client sends (stateless protocol)
                params["_meta"] = {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                }
            body = json.dumps({"jsonrpc": "2.0", "id": next(serial), "method": "tools/call", "params": params}).encode()
            headers = [
                ("authorization", f"Bearer {token}"),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", protocol),
                *([("mcp-method", "tools/call"), ("mcp-name", params["name"])] if protocol == MODERN else []),
                ("content-length", str(len(body))),
            ]
            status, out = await _call(app, "POST", "/_keybrake/mcp", headers, body)
            assert status == 200 and b'"isError":false' in out, out

        for i in range(100):  # warm up both paths
            await proxied(i)
            await tool_call(i)
        best = {"proxied": 1e9, "mcp": 1e9}
        for r in range(rounds):
            for name, send in (("proxied", proxied), ("mcp", tool_call)):
                cpu = await _round(app, send, n, c)
                best[name] = min(best[name], cpu)
                print(f"round {r + 1}: {name:8} {cpu:.0f} µs CPU/request")
        added = best["mcp"] - best["proxied"]
        print(f"best: proxied {best['proxied']:.0f} µs, MCP tool call {best['mcp']:.0f} µs (MCP adds {added:.0f} µs)")
        await app.shutdown()
        await rt.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--protocol",
        choices=[MODERN, LEGACY],
        default=MODERN,
        help="MCP protocol version of the tool calls: the mcp SDK client's default, or the handshake era's",
    )
    args = ap.parse_args()
    os.environ.update(
        KEYBRAKE_ADMIN_TOKEN=ADMIN,
        KEYBRAKE_ALLOW_INSECURE_UPSTREAM="1",
        KEYBRAKE_UPSTREAM_HOSTS="127.0.0.1",
        KEYBRAKE_LOG_LEVEL="WARNING",
    )
    uvloop.run(_main(args.requests, args.concurrency, args.rounds, args.protocol))


if __name__ == "__main__":
    main()
