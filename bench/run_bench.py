#!/usr/bin/env python3
"""Keybrake benchmark: direct-to-upstream vs through Keybrake, in the same run.

    .venv/bin/python bench/run_bench.py [--duration 15] [--rate 200] [--connections 32]

Starts a fast fake Stripe + Twilio upstream (bench/fake_upstream.py) and `keybrake serve` on free
loopback ports with a throwaway data dir, issues a vault key per vendor with (huge) caps, then
measures, for the scenarios picked with --scenarios (default: stripe,twilio):

1. stripe, steady rate (open loop): a Python/aiohttp generator fires POST /v1/charges on a fixed
   schedule (--rate per second), alternating direct and proxied blocks, and reports p50/p99
   latency and the latency Keybrake adds (proxied minus direct);
2. twilio, steady rate (open loop): the same for an SMS send,
   POST /2010-04-01/Accounts/{sid}/Messages.json (direct: Basic with the real Account SID and
   auth token; proxied: Basic vk_id:vault_key to /twilio/2010-04-01/Accounts/{vk_id}/...);
3. stripe, max throughput (closed loop): wrk with --connections connections against each target.

Every proxied request goes through full enforcement (key auth, cap reservation, audit row in
SQLite). At the end the audit rows for each bench key are counted through the admin API and
compared with the number of requests of that vendor the upstream saw from Keybrake.

Prints a table, writes JSON to bench/results/, and exits 0 (1 with --check if a target is
missed, 2 if the setup fails: keybrake or the fake upstream does not start, wrk is missing, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"  # loopback only, always
BODY = b"amount=100&currency=usd&customer=cus_bench"
TWILIO_BODY = b"To=%2B14155550100&From=%2B14155550199&Body=Your+order+has+shipped"
CONTENT_TYPE = "application/x-www-form-urlencoded"
SCENARIOS = ("stripe", "twilio")
TWILIO_PATH = "/2010-04-01/Accounts/{}/Messages.json"
TARGET_ADDED_P50_MS = 2.0
TARGET_PROXIED_RPS = 1000.0
# The bench key must never hit its cap: every proxied request reserves $1.
BENCH_POLICY = {"daily_usd_cap": 100_000_000, "max_requests_per_hour": 100_000_000}

EXIT_OK, EXIT_CHECK_FAILED, EXIT_SETUP_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
WRK_INSTALL_HINT = (
    "wrk (https://github.com/wg/wrk) is needed for the max-throughput scenarios.\n"
    "  Debian/Ubuntu: sudo apt-get install -y wrk\n"
    "  Fedora:        sudo dnf install wrk\n"
    "  macOS:         brew install wrk\n"
    "or pass --wrk /path/to/wrk, or --no-wrk to run only the steady-rate scenarios."
)


class SetupError(Exception):
    """The bench could not get its processes or its key in place."""


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


# -- small helpers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# No proxies for loopback calls, whatever HTTP_PROXY says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: dict[str, Any] | bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One blocking HTTP call to a loopback URL; returns (status, parsed JSON or text)."""
    data: bytes | None
    headers = {"Accept": "application/json"}
    if isinstance(body, dict):
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    else:
        data = body
        if body is not None:
            headers["Content-Type"] = content_type
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """user+system CPU seconds of a process (all its threads), from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


# -- child processes ---------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL this child's own process group."""
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
        log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {grace:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # group id == child pid (start_new_session)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def spawn(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Child:
    with log_path.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
        )
    return Child(name, proc, log_path)


def wait_healthy(child: Child, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.alive():
            raise SetupError(
                f"{child.name} exited with code {child.proc.returncode} before it was ready; "
                f"last log lines:\n{child.log_tail()}"
            )
        try:
            status, _ = http_json("GET", url, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise SetupError(
        f"{child.name} not healthy at {url} after {timeout:.0f}s ({last}); last log lines:\n{child.log_tail()}"
    )


def start_fake_upstream(
    secret: str, workdir: Path, timeout: float, twilio: dict[str, str] | None = None
) -> tuple[Child, str]:
    port = free_port()
    env = {**os.environ, "FAKE_UPSTREAM_SECRET": secret}
    if twilio:
        env.update(FAKE_TWILIO_ACCOUNT_SID=twilio["account_sid"], FAKE_TWILIO_AUTH_TOKEN=twilio["auth_token"])
    argv = [sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", str(port)]
    child = spawn("fake upstream", argv, env, workdir / "fake_upstream.log")
    base = f"http://{HOST}:{port}"
    wait_healthy(child, f"{base}/healthz", timeout)
    return child, base


def start_keybrake(exe: str, upstream_port: int, workdir: Path, admin_token: str, timeout: float) -> tuple[Child, str]:
    port = free_port()
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {
        **os.environ,
        "KEYBRAKE_ADMIN_TOKEN": admin_token,
        "KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "1",
        "KEYBRAKE_UPSTREAM_HOSTS": HOST,
    }
    argv = [exe, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    child = spawn("keybrake", argv, env, workdir / "keybrake.log")
    base = f"http://{HOST}:{port}"
    wait_healthy(child, f"{base}/healthz", timeout)
    return child, base


def upstream_stats(upstream_base: str) -> dict[str, int]:
    status, stats = http_json("GET", f"{upstream_base}/_bench/stats")
    if status != 200 or not isinstance(stats, dict):
        raise SetupError(f"fake upstream stats failed: HTTP {status}: {stats!r}")
    return {k: int(v) for k, v in stats.items()}


# -- keybrake provisioning and checks -------------------------------------------------------------


# The direct path marks its requests so the fake upstream can tell them from forwarded ones.
DIRECT_MARK = ("X-Bench-Path", "direct")


@dataclass
class Target:
    name: str  # "direct" or "keybrake"
    url: str
    bearer: str  # the Bearer token, or "user:password" for HTTP Basic (basic=True)
    body: bytes = BODY
    ok_status: int = 200
    basic: bool = False
    vendor: str = "stripe"

    def headers(self) -> dict[str, str]:
        if self.basic:
            auth = "Basic " + base64.b64encode(self.bearer.encode()).decode()
        else:
            auth = f"Bearer {self.bearer}"
        h = {"Authorization": auth, "Content-Type": CONTENT_TYPE}
        if self.name == "direct":
            h[DIRECT_MARK[0]] = DIRECT_MARK[1]
        return h


def provision(
    kb_base: str, admin_token: str, upstream_base: str, secret: Any, vendor: str = "stripe"
) -> tuple[str, str]:
    """Store the upstream secret and issue a vault key; returns (vault key, key id)."""
    cred = {"vendor": vendor, "name": f"bench-{vendor}", "secret": secret, "base_url": upstream_base}
    status, out = http_json("POST", f"{kb_base}/v1/credentials", token=admin_token, body=cred)
    if status != 201:
        raise SetupError(f"POST /v1/credentials -> HTTP {status}: {out!r}")
    policy: dict[str, Any] = dict(BENCH_POLICY)
    if vendor == "twilio":  # a realistic Twilio key: destination scope and a (huge) send cap
        policy.update(allowed_to_prefixes=["+1"], daily_send_cap=100_000_000)
    key_req = {
        "vendor": vendor,
        "credential": f"bench-{vendor}",
        "label": f"bench:{vendor}:run-{secrets.token_hex(3)}",
        "expires_in": "1h",
        "policy": policy,
    }
    status, out = http_json("POST", f"{kb_base}/v1/keys", token=admin_token, body=key_req)
    if status != 201 or not isinstance(out, dict) or not str(out.get("key", "")):
        raise SetupError(f"POST /v1/keys -> HTTP {status}: {out!r}")
    return str(out["key"]), str(out.get("id", ""))


def sanity_check(target: Target) -> dict[str, Any]:
    """One request each way before measuring; the answer must be the vendor's success shape.

    Returns a short summary of the answer (status, object id, the vendor's request-id header)
    for the JSON results.
    """
    req = urllib.request.Request(target.url, data=target.body, method="POST", headers=target.headers())
    try:
        with _OPENER.open(req, timeout=10.0) as resp:
            status, raw, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, raw, headers = exc.code, exc.read(), exc.headers
    except (OSError, urllib.error.URLError) as exc:
        raise SetupError(f"{target.vendor}/{target.name}: POST {target.url} failed: {exc}") from None
    try:
        out: Any = json.loads(raw)
    except ValueError:
        out = raw[:500]
    if target.vendor == "twilio":
        ok = isinstance(out, dict) and str(out.get("sid", "")).startswith("SM") and out.get("status") == "queued"
        id_header = "Twilio-Request-Id"
    else:
        ok = isinstance(out, dict) and out.get("object") == "charge"
        id_header = "Request-Id"
    if status != target.ok_status or not ok:
        raise SetupError(
            f"{target.vendor}/{target.name}: POST {target.url} -> HTTP {status}: {out!r}"
            + ("" if target.name == "direct" else " (see the keybrake log and GET /v1/audit; --keep-tmp keeps the log)")
        )
    return {"status": status, "id": out.get("sid") or out.get("id"), id_header: headers.get(id_header)}


def audit_summary(kb_base: str, admin_token: str, key_id: str, max_pages: int = 500) -> dict[str, Any]:
    """The audit rows of one bench key, paging the admin API (bounded to max_pages * 1000 rows).

    Returns {"rows": n, "outcomes": {"verdict status/upstream_status error_code": n},
    "with_vendor_request_id": n, "overhead_ms_p50"/"_p99": Keybrake's own overhead figure,
    "first_problem": the first row that is not an allowed 2xx (or None)}.
    """
    rows, cursor = 0, None
    outcomes: Counter[str] = Counter()
    with_request_id = 0
    overheads: list[float] = []
    first_problem: dict[str, Any] | None = None
    for _ in range(max_pages):
        query = f"key_id={key_id}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, out = http_json("GET", f"{kb_base}/v1/audit?{query}", token=admin_token, timeout=30.0)
        if status != 200 or not isinstance(out, dict):
            raise SetupError(f"GET /v1/audit -> HTTP {status}: {str(out)[:300]}")
        for row in out.get("data", []):
            rows += 1
            verdict, code = row.get("verdict"), row.get("error_code")
            outcome = f"{verdict} {row.get('status')}/{row.get('upstream_status')}" + (f" {code}" if code else "")
            outcomes[outcome] += 1
            if row.get("vendor_request_id"):
                with_request_id += 1
            if isinstance(row.get("overhead_ms"), int | float):
                overheads.append(float(row["overhead_ms"]))
            upstream = row.get("upstream_status")
            if first_problem is None and (code or not (isinstance(upstream, int) and 200 <= upstream < 300)):
                first_problem = {
                    k: row.get(k)
                    for k in ("ts", "method", "path", "verdict", "error_code", "reason", "status", "upstream_status")
                }
        cursor = out.get("next_cursor")
        if not cursor:
            overheads.sort()
            return {
                "rows": rows,
                "outcomes": dict(outcomes.most_common()),
                "with_vendor_request_id": with_request_id,
                "overhead_ms_p50": percentile(overheads, 50),
                "overhead_ms_p99": percentile(overheads, 99),
                "first_problem": first_problem,
            }
    raise SetupError(f"more than {max_pages * 1000} audit rows; stopped counting")


# -- results -------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str  # "steady" | "sustain" | "max"
    target: str  # "direct" | "keybrake"
    generator: str  # "open-loop 200/s" | "wrk c=32 t=2"
    ok: int
    errors: dict[str, int]
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    keybrake_cpu_ms_per_req: float | None = None
    upstream_cpu_ms_per_req: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    vendor: str = "stripe"

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class CpuMeter:
    """CPU seconds the children spend during a block of work."""

    def __init__(self, kb_pid: int | None, up_pid: int | None) -> None:
        self.pids = {"keybrake": kb_pid, "upstream": up_pid}
        self.totals: dict[str, float] = {"keybrake": 0.0, "upstream": 0.0}

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        before = {k: cpu_seconds(p) for k, p in self.pids.items()}
        try:
            yield
        finally:
            for k, p in self.pids.items():
                b, a = before[k], cpu_seconds(p)
                if b is not None and a is not None:
                    self.totals[k] += a - b

    def per_req_ms(self, who: str, requests: int) -> float | None:
        if self.pids[who] is None or requests <= 0:
            return None
        return self.totals[who] * 1000.0 / requests


# -- open-loop generator (aiohttp) ---------------------------------------------------------------


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, send -> full response
    lags: list[float] = field(default_factory=list)  # seconds, scheduled -> actually sent
    errors: Counter[str] = field(default_factory=Counter)
    dropped: int = 0  # not sent because max_inflight requests were already outstanding
    wall: float = 0.0
    cpu: CpuMeter | None = None

    def result(self, scenario: str, target: str, generator: str, vendor: str = "stripe") -> Result:
        lat = sorted(self.latencies)
        lags = sorted(self.lags)
        errors = dict(self.errors)
        if self.dropped:
            errors["dropped"] = self.dropped
        ms = 1000.0
        n = len(lat)
        return Result(
            scenario=scenario,
            target=target,
            generator=generator,
            ok=n,
            errors=errors,
            duration_s=round(self.wall, 3),
            rps=n / self.wall if self.wall > 0 else 0.0,
            p50_ms=percentile(lat, 50) * ms,
            p90_ms=percentile(lat, 90) * ms,
            p99_ms=percentile(lat, 99) * ms,
            max_ms=(lat[-1] if lat else math.nan) * ms,
            keybrake_cpu_ms_per_req=self.cpu.per_req_ms("keybrake", n) if self.cpu else None,
            upstream_cpu_ms_per_req=self.cpu.per_req_ms("upstream", n) if self.cpu else None,
            extra={
                "mean_ms": sum(lat) / n * ms if n else math.nan,
                "send_lag_p50_ms": percentile(lags, 50) * ms,
                "send_lag_p99_ms": percentile(lags, 99) * ms,
            },
            vendor=vendor,
        )


async def open_loop_block(
    session: Any,  # aiohttp.ClientSession
    target: Target,
    rate: float,
    seconds: float,
    max_inflight: int,
    request_timeout: float,
    samples: Samples,
) -> None:
    """Fire rate*seconds requests on a fixed schedule, whatever the answers' latency."""
    import aiohttp

    headers = target.headers()
    count = max(1, round(rate * seconds))
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        start = time.perf_counter()
        try:
            async with session.post(target.url, data=target.body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            samples.errors[type(exc).__name__] += 1
            return
        end = time.perf_counter()
        if status != target.ok_status:
            samples.errors[f"http_{status}"] += 1
            return
        samples.latencies.append(end - start)
        samples.lags.append(start - due)

    t0 = time.perf_counter() + 0.005
    try:
        for i in range(count):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= max_inflight:
                samples.dropped += 1
                continue
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            _, unfinished = await asyncio.wait(set(pending), timeout=request_timeout + 5.0)
            if unfinished:
                samples.errors["unfinished"] += len(unfinished)
    finally:  # also on Ctrl-C / SIGTERM: nothing may outlive its session
        for task in list(pending):
            task.cancel()
    samples.wall += time.perf_counter() - t0


async def open_loop_phase(
    targets: list[Target],
    rate: float,
    seconds: float,
    rounds: int,
    warmup: float,
    max_inflight: int,
    request_timeout: float,
    cpu: CpuMeter,
) -> dict[str, Samples]:
    """Warm up each target, then alternate blocks of seconds/rounds per target (ABBA order)."""
    import aiohttp

    out = {t.name: Samples(cpu=CpuMeter(*cpu.pids.values())) for t in targets}
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    sessions = {
        t.name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_inflight, ttl_dns_cache=None),
            timeout=timeout,
            trust_env=False,
        )
        for t in targets
    }
    try:
        if warmup > 0:
            for t in targets:
                await open_loop_block(sessions[t.name], t, rate, warmup, max_inflight, request_timeout, Samples())
        block = seconds / rounds
        for r in range(rounds):
            order = targets if r % 2 == 0 else list(reversed(targets))
            for t in order:
                samples = out[t.name]
                assert samples.cpu is not None
                with samples.cpu.measure():
                    await open_loop_block(sessions[t.name], t, rate, block, max_inflight, request_timeout, samples)
    finally:
        for s in sessions.values():
            await s.close()
    return out


def steady_phase(targets: list[Target], args: argparse.Namespace, cpu: CpuMeter) -> dict[str, Samples]:
    """The steady scenario's open loop (direct and proxied blocks alternating) for `targets`."""
    return run_open_loop(
        targets=targets,
        rate=args.rate,
        seconds=args.duration,
        rounds=args.rounds,
        warmup=args.warmup,
        max_inflight=args.max_inflight,
        request_timeout=args.request_timeout,
        cpu=cpu,
    )


def run_open_loop(**kwargs: Any) -> dict[str, Samples]:
    try:
        import uvloop
    except ImportError:  # plain asyncio works, just with more generator overhead
        return asyncio.run(open_loop_phase(**kwargs))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(open_loop_phase(**kwargs))


# -- wrk (closed loop, max throughput) -----------------------------------------------------------

_WRK_LUA = """\
wrk.method = "POST"
wrk.body = "{body}"
wrk.headers["Content-Type"] = "{content_type}"
wrk.headers["Authorization"] = "Bearer {bearer}"
{mark}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
    '"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, ' ..
    '"p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "max_us": %.1f, "mean_us": %.1f}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""
_SAFE = re.compile(r"^[A-Za-z0-9_=&./:-]+$")


def wrk_version(wrk: str) -> str:
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def run_wrk(
    wrk: str,
    target: Target,
    threads: int,
    connections: int,
    seconds: int,
    workdir: Path,
    cpu: CpuMeter,
) -> Result:
    for value in (BODY.decode(), CONTENT_TYPE, target.bearer):
        if not _SAFE.match(value):
            raise SetupError(f"refusing to put {value!r} into a Lua string")
    script = workdir / f"wrk_{target.name}.lua"
    mark = f'wrk.headers["{DIRECT_MARK[0]}"] = "{DIRECT_MARK[1]}"\n' if target.name == "direct" else ""
    script.write_text(_WRK_LUA.format(body=BODY.decode(), content_type=CONTENT_TYPE, bearer=target.bearer, mark=mark))
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        target.url,
    ]
    meter = CpuMeter(*cpu.pids.values())
    with meter.measure():
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^BENCH_JSON (\{.*\})$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise SetupError(f"wrk failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    w = json.loads(match.group(1))
    duration = w["duration_us"] / 1e6
    errors = {k: int(w[k]) for k in ("connect", "read", "write", "timeout") if w[k]}
    if w["status"]:
        errors["non_2xx"] = int(w["status"])
    ok = int(w["requests"] - w["status"])
    return Result(
        scenario="max",
        target=target.name,
        generator=f"wrk t={threads} c={connections}",
        ok=ok,
        errors=errors,
        duration_s=round(duration, 3),
        rps=ok / duration if duration > 0 else 0.0,
        p50_ms=w["p50_us"] / 1000.0,
        p90_ms=w["p90_us"] / 1000.0,
        p99_ms=w["p99_us"] / 1000.0,
        max_ms=w["max_us"] / 1000.0,
        keybrake_cpu_ms_per_req=meter.per_req_ms("keybrake", int(w["requests"])),
        upstream_cpu_ms_per_req=meter.per_req_ms("upstream", int(w["requests"])),
        extra={"mean_ms": w["mean_us"] / 1000.0, "requests_total": int(w["requests"])},
    )


# -- report --------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".2f", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, ("+" if signed else "") + spec)


def render_table(results: list[Result]) -> str:
    direct = {r.scenario: r for r in results if r.target == "direct"}
    header = (
        f"{'scenario':<10} {'target':<9} {'generator':<19} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>7} {'kb cpu ms/req':>13}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        base = direct.get(r.scenario) if r.target != "direct" else None
        add50 = r.p50_ms - base.p50_ms if base else None
        add99 = r.p99_ms - base.p99_ms if base else None
        lines.append(
            f"{r.scenario:<10} {r.target:<9} {r.generator:<19} {r.rps:>9.1f} "
            f"{_fmt(r.p50_ms):>8} {_fmt(r.p99_ms):>8} {_fmt(add50, signed=True):>8} "
            f"{_fmt(add99, signed=True):>8} {r.error_count:>7} "
            f"{_fmt(None if r.target == 'direct' else r.keybrake_cpu_ms_per_req, '.3f'):>13}"
        )
    return "\n".join(lines)


@dataclass
class Check:
    name: str
    value: str
    passed: bool


def evaluate(results: list[Result], audit: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    by = {(r.scenario, r.target): r for r in results}
    checks: list[Check] = []
    d, k = by.get(("steady", "direct")), by.get(("steady", "keybrake"))
    if d and k:
        added = k.p50_ms - d.p50_ms
        checks.append(
            Check(
                f"p50 added latency at {args.rate:g} req/s <= {args.target_p50_ms:g} ms, 0 errors",
                f"{added:+.2f} ms, {k.error_count} errors",
                added <= args.target_p50_ms and k.error_count == 0,
            )
        )
    d, k = by.get(("twilio", "direct")), by.get(("twilio", "keybrake"))
    if d and k:
        added = k.p50_ms - d.p50_ms
        checks.append(
            Check(
                f"Twilio SMS send: p50 added latency at {args.rate:g} req/s <= {args.target_p50_ms:g} ms, 0 errors",
                f"{added:+.2f} ms, {k.error_count} errors",
                added <= args.target_p50_ms and k.error_count == 0,
            )
        )
    m = by.get(("max", "keybrake"))
    if m:
        checks.append(
            Check(
                f"proxied throughput >= {args.target_rps:g} req/s (wrk), 0 errors",
                f"{m.rps:.0f} req/s, {m.error_count} errors",
                m.rps >= args.target_rps and m.error_count == 0,
            )
        )
    s = by.get(("sustain", "keybrake"))
    if s:
        checks.append(
            Check(
                f"proxied open loop holds {args.sustain_rate:g} req/s (>= 98%), 0 errors",
                f"{s.rps:.0f} req/s, p99 {s.p99_ms:.1f} ms, {s.error_count} errors",
                s.rps >= 0.98 * args.sustain_rate and s.error_count == 0,
            )
        )
    for vendor in SCENARIOS:
        a = audit.get(vendor)
        if a:
            checks.append(
                Check(
                    f"{vendor}: one audit row per request Keybrake forwarded",
                    f"{a['audit_rows']} rows / {a['forwarded']} forwarded; {_outcomes(a)}",
                    a["audit_rows"] >= a["forwarded"] > 0,
                )
            )
    return checks


def _outcomes(a: dict[str, Any]) -> str:
    """The audit rows' outcomes, e.g. 'allow 201/201: 1601'."""
    outcomes = a.get("summary", {}).get("outcomes", {})
    return ", ".join(f"{k}: {v}" for k, v in outcomes.items()) or "no rows"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 4)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    path.write_text(json.dumps(clean(payload), indent=2) + "\n")


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark Keybrake against a fake Stripe upstream (direct vs proxied).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=int,
        default=15,
        help="seconds measured per target in each scenario (1-600)",
    )
    p.add_argument("--rate", type=float, default=200.0, help="open-loop steady rate, requests/s (1-5000)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (1-1024)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (1-64)")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="steady scenario: alternate direct/proxied blocks this many times",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of discarded warm-up traffic per target (0-60)",
    )
    p.add_argument(
        "--sustain-rate",
        type=float,
        default=0.0,
        help="also run a proxied open-loop scenario at this rate (0 = skip)",
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=512,
        help="open loop: requests outstanding at most; beyond, sends are dropped",
    )
    p.add_argument("--request-timeout", type=float, default=10.0, help="open loop, seconds")
    p.add_argument("--startup-timeout", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--keybrake",
        default=None,
        help="keybrake executable (default: next to this Python, then PATH)",
    )
    p.add_argument("--wrk", default=None, help="wrk executable (default: from PATH)")
    p.add_argument("--no-wrk", action="store_true", help="skip the max-throughput scenarios")
    p.add_argument(
        "--direct-only",
        action="store_true",
        help="do not start keybrake; measure only the direct path",
    )
    p.add_argument("--target-p50-ms", type=float, default=TARGET_ADDED_P50_MS)
    p.add_argument("--target-rps", type=float, default=TARGET_PROXIED_RPS)
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default: bench/results/bench-<UTC time>.json)",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (data, logs)")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated vendors to measure: stripe (steady POST /v1/charges, plus wrk max and "
        "--sustain-rate) and/or twilio (steady SMS send, POST .../Messages.json)",
    )
    p.add_argument(
        "--twilio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-twilio is short for dropping twilio from --scenarios",
    )
    args = p.parse_args(argv)
    picked = [s.strip().lower() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(picked) - set(SCENARIOS))
    if unknown or not picked:
        p.error(f"--scenarios takes a comma-separated subset of {','.join(SCENARIOS)} (got {args.scenarios!r})")
    args.scenarios = [s for s in SCENARIOS if s in picked and (s != "twilio" or args.twilio)]
    if not args.scenarios:
        p.error("no scenario left to run (--no-twilio with --scenarios twilio)")
    bounds = {
        "duration": (1, 600),
        "rate": (1, 5000),
        "connections": (1, 1024),
        "threads": (1, 64),
        "rounds": (1, 100),
        "warmup": (0, 60),
        "sustain_rate": (0, 20000),
        "max_inflight": (1, 10000),
        "request_timeout": (0.1, 120),
        "startup_timeout": (1, 300),
    }
    for name, (lo, hi) in bounds.items():
        value = getattr(args, name)
        if not lo <= value <= hi:
            p.error(f"--{name.replace('_', '-')} must be between {lo} and {hi}")
    if args.threads > args.connections:
        p.error("--threads must not exceed --connections")
    return args


def git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def machine_note(load_before: tuple[float, float, float] | None) -> str:
    """CPUs, Python and the 1-minute load average before and after the run (other busy processes
    on the machine compete with the generator, the upstream and Keybrake)."""
    note = f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    if load_before is not None and hasattr(os, "getloadavg"):
        note += f", load average (1 min) {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    return note


def find_keybrake(explicit: str | None) -> str | None:
    if explicit:
        return explicit if shutil.which(explicit) else None
    beside = Path(sys.executable).parent / "keybrake"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("keybrake")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    # SIGTERM is handled as Ctrl-C, which asyncio.Runner turns into a clean cancellation.
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, on_sigterm)

    wrk: str | None = None
    if not args.no_wrk:
        wrk = shutil.which(args.wrk or "wrk")
        if wrk is None:
            print(f"error: wrk not found.\n{WRK_INSTALL_HINT}", file=sys.stderr)
            return EXIT_SETUP_FAILED
    keybrake_exe: str | None = None
    if not args.direct_only:
        keybrake_exe = find_keybrake(args.keybrake)
        if keybrake_exe is None:
            print(
                "error: keybrake executable not found. Install the project into this venv "
                "(.venv/bin/pip install -e .), pass --keybrake PATH, or use --direct-only.",
                file=sys.stderr,
            )
            return EXIT_SETUP_FAILED

    workdir = Path(tempfile.mkdtemp(prefix="keybrake-bench-"))
    children: list[Child] = []
    secret = "sk_test_bench" + secrets.token_hex(12)
    twilio_secret = {"account_sid": "AC" + secrets.token_hex(16), "auth_token": secrets.token_hex(16)}
    admin_token = "bench-admin-" + secrets.token_urlsafe(32)
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results: list[Result] = []
    audit: dict[str, Any] = {}
    try:
        log(f"temp dir {workdir}")
        upstream, upstream_base = start_fake_upstream(secret, workdir, args.startup_timeout, twilio_secret)
        children.append(upstream)
        log(f"fake upstream pid {upstream.pid} at {upstream_base}")
        sid, auth_token = twilio_secret["account_sid"], twilio_secret["auth_token"]
        direct = {
            "stripe": Target("direct", f"{upstream_base}/v1/charges", secret),
            "twilio": Target(
                "direct",
                upstream_base + TWILIO_PATH.format(sid),
                f"{sid}:{auth_token}",
                TWILIO_BODY,
                ok_status=201,
                basic=True,
                vendor="twilio",
            ),
        }
        # vendor -> [direct, keybrake] targets of the steady scenario
        steady_targets: dict[str, list[Target]] = {v: [direct[v]] for v in args.scenarios}
        key_ids: dict[str, str] = {}
        sanity: dict[str, dict[str, Any]] = {}
        for vendor in args.scenarios:
            sanity[f"{vendor}/direct"] = sanity_check(direct[vendor])

        kb: Child | None = None
        kb_base = ""
        if keybrake_exe is not None:
            upstream_port = int(upstream_base.rsplit(":", 1)[1])
            kb, kb_base = start_keybrake(keybrake_exe, upstream_port, workdir, admin_token, args.startup_timeout)
            children.append(kb)
            log(f"keybrake pid {kb.pid} at {kb_base} (data dir {workdir / 'data'})")
            for vendor in args.scenarios:
                if vendor == "stripe":
                    vault_key, key_ids[vendor] = provision(kb_base, admin_token, upstream_base, secret)
                    proxied = Target("keybrake", f"{kb_base}/stripe/v1/charges", vault_key)
                else:
                    vault_key, vk_id = provision(kb_base, admin_token, upstream_base, twilio_secret, "twilio")
                    if not vk_id.startswith("vk_"):
                        raise SetupError(f"POST /v1/keys (twilio) answered no usable key id: {vk_id!r}")
                    key_ids[vendor] = vk_id
                    # Basic vk_id:vault_key, and the key id where the Account SID goes; Keybrake swaps both
                    url = kb_base + "/twilio" + TWILIO_PATH.format(vk_id)
                    proxied = Target(
                        "keybrake", url, f"{vk_id}:{vault_key}", TWILIO_BODY, ok_status=201, basic=True, vendor="twilio"
                    )
                log(f"{vendor}: issued vault key {vault_key[:16]}... (id {key_ids[vendor]})")
                try:
                    sanity[f"{vendor}/keybrake"] = sanity_check(proxied)
                except SetupError as exc:  # say why: Keybrake's audit row and its log
                    with contextlib.suppress(SetupError, OSError, urllib.error.URLError):
                        row = audit_summary(kb_base, admin_token, key_ids[vendor])["first_problem"]
                        exc.args = (f"{exc}\naudit row: {json.dumps(row)}",)
                    raise SetupError(f"{exc}\nkeybrake log tail:\n{kb.log_tail(20)}") from None
                steady_targets[vendor].append(proxied)
        log(f"sanity requests: {json.dumps(sanity)}")

        cpu = CpuMeter(kb.pid if kb else None, upstream.pid)

        # 1. steady rate, open loop, direct and proxied blocks alternating, one vendor after the
        #    other. Stripe keeps the scenario name "steady" (comparable with earlier results);
        #    Twilio's is "twilio": an SMS send, direct with the real SID and token, proxied with
        #    the vault key (Basic vk_…:vault_key_…, SID swap, destination check, send cap).
        for vendor, targets in steady_targets.items():
            scenario = "steady" if vendor == "stripe" else vendor
            what = "POST /v1/charges" if vendor == "stripe" else "SMS send, POST .../Messages.json"
            log(
                f"{scenario}: {vendor} {what}, {args.rate:g} req/s open loop, {args.duration}s per target in "
                f"{args.rounds} alternating rounds (+{args.warmup:g}s warm-up each)"
            )
            samples = steady_phase(targets, args, cpu)
            for t in targets:
                results.append(samples[t.name].result(scenario, t.name, f"open-loop {args.rate:g}/s", vendor))

        stripe_targets = steady_targets.get("stripe", [])
        # 2. optional sustained proxied rate, open loop (Stripe)
        if len(stripe_targets) == 2 and args.sustain_rate > 0:
            log(f"sustain: {args.sustain_rate:g} req/s open loop through keybrake")
            sus = run_open_loop(
                targets=[stripe_targets[1]],
                rate=args.sustain_rate,
                seconds=args.duration,
                rounds=1,
                warmup=0,
                max_inflight=args.max_inflight,
                request_timeout=args.request_timeout,
                cpu=cpu,
            )
            gen = f"open-loop {args.sustain_rate:g}/s"
            results.append(sus["keybrake"].result("sustain", "keybrake", gen))

        # 3. max throughput, closed loop (wrk, Stripe)
        if wrk is not None:
            for t in stripe_targets:
                log(f"max: wrk -t{args.threads} -c{args.connections} -d{args.duration}s against {t.name}")
                results.append(run_wrk(wrk, t, args.threads, args.connections, args.duration, workdir, cpu))

        # 4. audit rows vs requests keybrake forwarded, per vendor
        if kb is not None:
            time.sleep(0.5)  # let requests wrk left in flight finish
            stats = upstream_stats(upstream_base)
            counters = {"stripe": "charges", "twilio": "messages"}
            for vendor, key_id in key_ids.items():
                n = counters[vendor]
                forwarded = stats[n] - stats[f"{n}_direct"]
                summary: dict[str, Any] = {}
                for _ in range(10):  # an async audit writer may lag a little
                    summary = audit_summary(kb_base, admin_token, key_id)
                    if summary["rows"] >= forwarded:
                        break
                    time.sleep(1.0)
                audit[vendor] = {
                    "key_id": key_id,
                    "audit_rows": summary["rows"],
                    "forwarded": forwarded,
                    "summary": summary,
                }
                log(
                    f"{vendor}: audit rows for the bench key: {summary['rows']}; requests forwarded upstream: "
                    f"{forwarded}; {_outcomes(audit[vendor])}; with a vendor request id: "
                    f"{summary['with_vendor_request_id']}"
                )
                if summary["first_problem"]:
                    log(f"{vendor}: first audit row that is not an allowed 2xx: {summary['first_problem']}")
            audit["audit_rows"] = sum(audit[v]["audit_rows"] for v in key_ids)
            audit["forwarded"] = sum(audit[v]["forwarded"] for v in key_ids)
            audit["upstream_stats"] = stats
            audit["sanity"] = sanity
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    except KeyboardInterrupt:
        print("interrupted; stopping the child processes", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for child in reversed(children):
            child.stop()
        if args.keep_tmp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    checks = evaluate(results, audit, args)
    print()
    print(render_table(results))
    print()
    print(
        "+p50/+p99 = keybrake minus direct in the same scenario. 'steady' (Stripe POST /v1/charges)\n"
        "and 'twilio' (Twilio SMS send, POST .../Messages.json) are open-loop fixed-rate schedules\n"
        "(latency from send to full response); 'max' is wrk closed-loop at saturation (Stripe),\n"
        "where latency is mostly queueing. kb cpu = keybrake process CPU per request."
    )
    print(f"machine: {machine_note(load_before)}")
    for r in results:
        if r.extra.get("send_lag_p99_ms", 0) > 5:
            print(
                f"warning: {r.scenario}/{r.target}: generator send lag p99 "
                f"{r.extra['send_lag_p99_ms']:.1f} ms; the load generator is CPU-starved"
            )
    if checks:
        print()
        for c in checks:
            print(f"[{'PASS' if c.passed else 'FAIL'}] {c.name}: {c.value}")

    out = args.out or BENCH_DIR / "results" / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    payload = {
        "started_at": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrk_version(wrk) if wrk else None,
            "note": machine_note(load_before),
        },
        "git_commit": git_commit(),
        "keybrake": keybrake_exe,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [asdict(r) for r in results],
        "audit": audit,
        "checks": [asdict(c) for c in checks],
    }
    write_json(out, payload)
    print(f"\nJSON results: {out}")
    if args.check and not all(c.passed for c in checks):
        return EXIT_CHECK_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
