"""Two `keybrake serve` processes on one SQLite data dir (two ports) vs one: throughput, CPU
per request, and exactness of a tight cap across both (docs/operations.md, both cores).

    .venv/bin/python bench/two_procs.py [--keybrake PATH] [--seconds S] [--connections C]

1. Starts the fake upstream and keybrake A (fresh data dir), provisions a Stripe credential and
   a bench key through A, then starts keybrake B on the same data dir and another port.
2. wrk, C connections against A alone (B idle); then C/2 against A and C/2 against B at once.
   CPU per request = (CPU of A + B) / requests answered 200.
3. Exactness: a key with daily_usd_cap $25 and $1 charges; 300 requests, 150 threads through A
   and B at once; the fake upstream must have received exactly 25 charges for it, and the audit
   rows must say 25 allowed.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from children import (
    HOST,
    LOOPBACK_OPENER,
    free_port,
    http_json,
    spawn,
    start_fake_upstream,
    upstream_stats,
    wait_healthy,
)
from closed_loop import _WRK_LUA
from measure import cpu_seconds
from targets import BODY, CONTENT_TYPE, provision

ADMIN = "bench-admin-" + secrets.token_hex(16)


def _keybrake(exe: str, data_dir: Path, upstream_port: int, workdir: Path, name: str) -> tuple[object, str]:
    port = free_port()
    env = {
        **__import__("os").environ,
        "KEYBRAKE_ADMIN_TOKEN": ADMIN,
        "KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "1",
        "KEYBRAKE_UPSTREAM_HOSTS": HOST,
    }
    argv = [exe, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir), "--shared-data-dir"]
    child = spawn(name, argv, env, workdir / f"{name}.log")
    base = f"http://{HOST}:{port}"
    wait_healthy(child, f"{base}/healthz", 30)
    return child, base


def _wrk(url: str, bearer: str, connections: int, seconds: int, workdir: Path) -> subprocess.Popen[str]:
    script = workdir / f"wrk_{secrets.token_hex(3)}.lua"
    script.write_text(_WRK_LUA.format(body=BODY.decode(), content_type=CONTENT_TYPE, bearer=bearer, mark=""))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ok(proc: subprocess.Popen[str]) -> tuple[int, float, int]:
    """(requests answered 200, seconds, other answers and errors) of one wrk run."""
    out, _ = proc.communicate(timeout=120)
    w = json.loads(re.search(r"^BENCH_JSON (\{.*\})$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    bad = int(w["status"] + w["timeout"] + w["connect"] + w["read"] + w["write"])
    return int(w["requests"] - w["status"] - w["timeout"]), w["duration_us"] / 1e6, bad


def _load(targets: list[str], bearer: str, conns: int, seconds: int, pids: list[int], workdir: Path) -> str:
    cpu0 = [cpu_seconds(p) or 0 for p in pids]
    procs = [_wrk(f"{t}/v1/charges", bearer, conns // len(targets), seconds, workdir) for t in targets]
    done = [_ok(p) for p in procs]
    cpu = [(cpu_seconds(p) or 0) - c for p, c in zip(pids, cpu0, strict=True)]
    ok = sum(n for n, _, _ in done)
    rps = sum(n / d for n, d, _ in done)
    bad = sum(b for _, _, b in done)
    split = " + ".join(f"{c / ok * 1e6:.0f}" for c in cpu)
    return (
        f"{len(targets)} process(es) loaded: {rps:7.0f} req/s, {sum(cpu) / ok * 1e6:5.0f} µs keybrake CPU/request "
        f"(A + B: {split}), {ok} answered 200, {bad} other/errors"
    )


def _charge(base: str, bearer: str, statuses: list[int]) -> None:
    req = urllib.request.Request(
        f"{base}/v1/charges",
        data=BODY,
        method="POST",
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": CONTENT_TYPE},
    )
    try:
        with LOOPBACK_OPENER.open(req, timeout=30) as resp:
            statuses.append(resp.status)
    except urllib.error.HTTPError as exc:
        statuses.append(exc.code)


def _exactness(a: str, b: str, upstream: str) -> str:
    cred = "bench-stripe"
    key_req = {"vendor": "stripe", "credential": cred, "expires_in": "1h", "policy": {"daily_usd_cap": 25}}
    status, out = http_json("POST", f"{a}/v1/keys", token=ADMIN, body=key_req)
    assert status == 201, out
    bearer, key_id = out["key"], out["id"]
    before = upstream_stats(upstream)["charges"]
    statuses: list[int] = []
    threads = [threading.Thread(target=_charge, args=(a if i % 2 else b, bearer, statuses)) for i in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    forwarded = upstream_stats(upstream)["charges"] - before
    status, page = http_json("GET", f"{a}/v1/audit?key_id={key_id}&limit=500", token=ADMIN)
    rows = page["data"] if isinstance(page, dict) else []
    allowed = sum(1 for r in rows if r.get("verdict") == "allowed")
    verdict = "EXACT" if forwarded == 25 and statuses.count(200) == 25 and allowed == 25 else "OVERSHOOT/WRONG"
    by_status = dict(sorted(Counter(statuses).items()))
    by_verdict = dict(sorted(Counter(str(r.get("verdict")) for r in rows).items()))
    return (
        f"exactness ($25 cap, $1 charges, 300 requests over both): {verdict}: forwarded {forwarded}, "
        f"answers {by_status}, audit rows {by_verdict}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keybrake", default=str(Path(sys.executable).parent / "keybrake"))
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        secret = "sk_test_" + secrets.token_hex(12)
        up, up_base = start_fake_upstream(secret, work, 20)
        data = work / "data"
        data.mkdir()
        kids = []
        try:
            a, a_base = _keybrake(args.keybrake, data, int(up_base.rsplit(":", 1)[1]), work, "keybrake-a")
            kids.append(a)
            bearer, _ = provision(a_base, ADMIN, up_base, secret)
            b, b_base = _keybrake(args.keybrake, data, int(up_base.rsplit(":", 1)[1]), work, "keybrake-b")
            kids.append(b)
            pids = [a.pid, b.pid]  # type: ignore[attr-defined]
            for _ in range(args.rounds):
                print(_load([a_base], bearer, args.connections, args.seconds, pids, work), flush=True)
                print(_load([a_base, b_base], bearer, args.connections, args.seconds, pids, work), flush=True)
            print(_exactness(a_base, b_base, up_base), flush=True)
        finally:
            for k in kids:
                k.stop()  # type: ignore[attr-defined]
            up.stop()


if __name__ == "__main__":
    main()
