"""Keybrake CPU per proxied request without sockets: KeybrakeApp called over ASGI in this
process (no uvicorn, no HTTP client), a canned Stripe answer, SQLite in a temp dir.

    .venv/bin/python bench/inproc_cpu.py [--requests N] [--concurrency C] [--rounds R]

Prints, per round, the process's CPU per request (every thread: the event loop and the SQLite
writer) and the event-loop thread's own CPU per request (`time.thread_time`), then the best of
each. Far less noisy than the wrk figures on a shared machine, so a change to the pipeline, the
vendors or the store shows here first; run it with the old and the new venv back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ADMIN = "inproc-admin-token-0123456789abcdefghij"
BODY = b"amount=100&currency=usd&customer=cus_bench"
CHARGE = {"object": "charge", "amount": 100, "currency": "usd", "status": "succeeded", "paid": True,
          "captured": True, "amount_captured": 100, "amount_refunded": 0, "customer": "cus_bench"}  # fmt: skip


class Canned:
    """The upstream: a Stripe answer (`doc`, a charge by default), a new `prefix`_ id each time (as Stripe's)."""

    def __init__(self, doc: dict[str, Any] = CHARGE, prefix: str = "ch") -> None:
        self._n = itertools.count()
        self.doc, self.prefix = doc, prefix

    async def send(self, request: Any) -> Any:
        from keybrake.core.upstream import UpstreamResponse

        await asyncio.sleep(0)
        body = json.dumps({"id": f"{self.prefix}_{next(self._n):024d}", **self.doc}).encode()
        headers = [("content-type", "application/json"), ("request-id", "req_1"), ("content-length", str(len(body)))]
        return UpstreamResponse(200, headers, body, 0.1)

    async def close(self) -> None:
        return None


async def _call(app: Any, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    msgs = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return msgs.pop() if msgs else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers], "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8080), "keybrake.listener": "all",
    }  # fmt: skip
    await app(scope, receive, send)
    return int(sent[0]["status"]), b"".join(m.get("body", b"") for m in sent[1:])


async def _provision(app: Any, policy: dict[str, Any] | None = None) -> str:
    adm = [("authorization", f"Bearer {ADMIN}"), ("content-type", "application/json")]
    cred = {"vendor": "stripe", "name": "bench", "secret": "sk_test_abcdefghijklmnop", "base_url": "http://127.0.0.1:9"}
    status, out = await _call(app, "POST", "/v1/credentials", adm, json.dumps(cred).encode())
    assert status == 201, out
    policy = policy or {"daily_usd_cap": 100_000_000, "max_requests_per_hour": 100_000_000}
    key = {"vendor": "stripe", "credential": "bench", "expires_in": "1h", "policy": policy}
    status, out = await _call(app, "POST", "/v1/keys", adm, json.dumps(key).encode())
    assert status == 201, out
    return str(json.loads(out)["key"])


async def _main(n: int, c: int, rounds: int) -> None:
    from keybrake.app import KeybrakeApp
    from keybrake.config import from_env
    from keybrake.runtime import ensure_admin_token, open_runtime

    with tempfile.TemporaryDirectory() as tmp:
        rt = await open_runtime(from_env().with_overrides(data_dir=Path(tmp)), create=True)
        await ensure_admin_token(rt)
        app = KeybrakeApp(rt, upstream=Canned())
        await app.startup()
        token = await _provision(app)
        headers = [
            ("host", "127.0.0.1:8080"),
            ("authorization", f"Bearer {token}"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", str(len(BODY))),
        ]
        for _ in range(200):
            assert (await _call(app, "POST", "/v1/charges", headers, BODY))[0] == 200
        best, best_loop = 1e9, 1e9
        for r in range(rounds):
            left = n

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    status, out = await _call(app, "POST", "/v1/charges", headers, BODY)
                    assert status == 200, out

            ru0, t0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(c)))
            await app.settler.flush(10)
            ru1, t1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time(), time.perf_counter()
            cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / n * 1e6
            loop = (t1 - t0) / n * 1e6
            best, best_loop = min(best, cpu), min(best_loop, loop)
            print(
                f"round {r + 1}: {cpu:.0f} µs CPU/request, event-loop thread {loop:.0f} µs, {n / (w1 - w0):.0f} req/s"
            )
        print(f"{sys.prefix}: best {best:.0f} µs CPU/request, event-loop thread {best_loop:.0f} µs")
        await app.shutdown()
        await rt.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    os.environ.update(
        KEYBRAKE_ADMIN_TOKEN=ADMIN,
        KEYBRAKE_ALLOW_INSECURE_UPSTREAM="1",
        KEYBRAKE_UPSTREAM_HOSTS="127.0.0.1",
        KEYBRAKE_LOG_LEVEL="WARNING",
    )
    uvloop.run(_main(args.requests, args.concurrency, args.rounds))


if __name__ == "__main__":
    main()
