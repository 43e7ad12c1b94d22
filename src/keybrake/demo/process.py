"""`keybrake serve` as a child process of the demo: its own temporary data directory, a free
loopback port chosen by the operating system (`--port 0`, read back from its `listening` log line),
an environment with none of the user's `KEYBRAKE_*` settings, and a stop that always reaps it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

STARTUP_S = 60.0  # how long `keybrake serve` may take to listen (a first start creates the database)
STOP_S = 10.0  # how long it may take to drain before it is killed


class ProcessError(Exception):
    """Keybrake did not start or stopped early; the message names why and the log's last lines."""


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, a SIGTERM when the demo process dies, however it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _healthy(base_url: str) -> bool:
    """`GET /healthz` answers 200 (the socket is bound before the server accepts on it)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
            session.get(base_url + "/healthz") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


class KeybrakeProcess:
    """One `keybrake serve` on `data_dir` (created by the caller), logging JSON lines to
    `data_dir/serve.log`. `start()` returns once it listens; `base_url` is then
    `http://127.0.0.1:<port>`. `stop()` is idempotent: SIGTERM, then SIGKILL after STOP_S."""

    def __init__(self, data_dir: Path, admin_token: str, extra_env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "serve.log"
        self.base_url = ""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRAKE_")}
        env.update(
            KEYBRAKE_ADMIN_TOKEN=admin_token,
            KEYBRAKE_ALLOW_INSECURE_UPSTREAM="1",  # the sandboxes are plain http on loopback
            KEYBRAKE_UPSTREAM_HOSTS="127.0.0.1",
            KEYBRAKE_LOG_LEVEL="INFO",
            **extra_env,
        )
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 8) -> str:
        """The last `lines` lines of the server's log ("" when there is none)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self) -> None:
        """Spawn and wait until it listens; raises ProcessError (with the log's tail) otherwise."""
        cmd = [sys.executable, "-m", "keybrake.cli", "serve", "--host", "127.0.0.1", "--port", "0",
               "--data-dir", str(self.data_dir / "keybrake")]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C reaches the demo, which stops it in order
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ProcessError(f"keybrake serve exited with {self._proc.returncode}:\n{self.log_tail()}")
            address = self._listening()
            if address and await _healthy(address):
                self.base_url = address
                return
            await asyncio.sleep(0.05)
        raise ProcessError(f"keybrake serve did not listen within {STARTUP_S:g} s:\n{self.log_tail()}")

    def _listening(self) -> str | None:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("msg") == "listening" and rec.get("listener") in ("proxy", "all"):
                return str(rec.get("address"))
        return None

    def stop(self) -> int | None:
        """Stop and reap the process; returns its exit status (None if it never started)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode
