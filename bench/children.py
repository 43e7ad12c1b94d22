"""The bench's child processes (the fake upstream, `keybrake serve`) and its loopback HTTP calls."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"  # loopback only, always


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
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
        with LOOPBACK_OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


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


def start_keybrake(
    exe: str,
    upstream_port: int,
    workdir: Path,
    admin_token: str,
    timeout: float,
    extra_env: dict[str, str] | None = None,
) -> tuple[Child, str]:
    port = free_port()
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {
        **os.environ,
        "KEYBRAKE_ADMIN_TOKEN": admin_token,
        "KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "1",
        "KEYBRAKE_UPSTREAM_HOSTS": HOST,
        **(extra_env or {}),
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
