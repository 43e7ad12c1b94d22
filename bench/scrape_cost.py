#!/usr/bin/env python3
"""What one `/metrics` scrape costs Keybrake: CPU of the keybrake process per scrape.

    .venv/bin/python bench/scrape_cost.py [--scrapes 200] [--requests 300] [--keybrake PATH]

Starts the bench's fake upstream and `keybrake serve` (as run_bench.py does), sends `--requests`
proxied Stripe charges plus a few keyless denials (so every series a real install has exists),
then scrapes `/metrics` `--scrapes` times with the admin token, one after another, and reads the
keybrake process's CPU (/proc/<pid>/stat, user+system, all threads) before and after. Prints CPU
ms per scrape, the exposition's size and its number of samples. Exit 2 if the setup fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from children import LOOPBACK_OPENER, SetupError, log
from measure import cpu_seconds
from session import Run, start_direct, start_proxied
from targets import sanity_check


def _scrape(url: str, token: str) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with LOOPBACK_OPENER.open(req, timeout=10.0) as resp:
        return bytes(resp.read())


def _deny(url: str) -> None:
    try:
        LOOPBACK_OPENER.open(urllib.request.Request(url, data=b"amount=1", method="POST"), timeout=10.0)
    except urllib.error.HTTPError:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--keybrake", default=str(Path(sys.executable).with_name("keybrake")))
    p.add_argument("--startup-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    args.scenarios = ["stripe"]
    with tempfile.TemporaryDirectory(prefix="kb-scrape-") as tmp:
        run = Run(Path(tmp))
        try:
            start_direct(run, args)
            start_proxied(run, args, args.keybrake)
            assert run.kb is not None
            proxied = run.steady_targets["stripe"][1]
            for _ in range(args.requests):
                sanity_check(proxied)
            for _ in range(10):
                _deny(f"{run.kb_base}/stripe/v1/charges")
            url = f"{run.kb_base}/metrics"
            body = _scrape(url, run.admin_token)
            time.sleep(0.5)  # let the settle writer and the access log go quiet
            before, started = cpu_seconds(run.kb.pid), time.monotonic()
            for _ in range(args.scrapes):
                _scrape(url, run.admin_token)
            after, wall = cpu_seconds(run.kb.pid), time.monotonic() - started
        except SetupError as exc:
            log(f"setup failed: {exc}")
            return 2
        finally:
            for child in reversed(run.children):
                child.stop()
    if before is None or after is None:
        log("could not read the keybrake process's CPU from /proc")
        return 2
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    print(f"keybrake: {args.keybrake}")
    print(f"/metrics: {len(body)} bytes, {samples} samples (after {args.requests} charges and 10 denials)")
    print(f"{args.scrapes} scrapes in {wall:.2f} s: {(after - before) / args.scrapes * 1000:.2f} ms CPU per scrape")
    return 0


if __name__ == "__main__":
    sys.exit(main())
