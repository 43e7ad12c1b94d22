"""The closed loop at saturation: wrk against one target (max throughput)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from children import SetupError
from measure import CpuMeter, Result
from targets import BODY, CONTENT_TYPE, DIRECT_MARK, Target

WRK_INSTALL_HINT = (
    "wrk (https://github.com/wg/wrk) is needed for the max-throughput scenarios.\n"
    "  Debian/Ubuntu: sudo apt-get install -y wrk\n"
    "  Fedora:        sudo dnf install wrk\n"
    "  macOS:         brew install wrk\n"
    "or pass --wrk /path/to/wrk, or --no-wrk to run only the steady-rate scenarios."
)

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
    meter = cpu.fresh()
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
    result = Result(
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
    return meter.with_pg(result, int(w["requests"]))
