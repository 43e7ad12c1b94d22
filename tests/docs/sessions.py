"""Long-lived shells for running a page's blocks as a reader would: one bash and one Python
interpreter per page (a variable set in one block is there in the next), and background servers.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

_END = "__DOCRUN_END__"
# Runs in the page's Python: executes each block in one namespace, prints its output and error.
# Output goes to one real file for the whole session, not a StringIO per block: a block may hand
# sys.stderr to a process it starts (the MCP SDK's stdio client does, as a default argument bound
# when a block first imports it), which needs a file descriptor that stays open.
_PY_DRIVER = r"""
import contextlib, json, sys, tempfile, traceback
ns = {"__name__": "__main__"}
real = sys.stdout
buf = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
for line in sys.stdin:
    code = json.loads(line)
    err = ""
    start = buf.seek(0, 2)
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            exec(compile(code, "<block>", "exec"), ns)
        except BaseException:
            err = traceback.format_exc()
    buf.flush()
    buf.seek(start)
    out = buf.read()
    real.write(json.dumps({"out": out, "err": err}) + "\n")
    real.flush()
"""


class BlockFailed(Exception):
    """A block exited non-zero, raised, or did not finish in time (message: what and its output)."""


class Bash:
    """One bash process in `cwd`; `run(code)` runs a block in it and returns its output
    (stdout and stderr together). Raises BlockFailed on a non-zero status or after `timeout_s`."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, code: str, timeout_s: float = 120.0) -> str:
        """Run `code` as one block (its last command's status decides) and return what it printed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        script = f"{{\n{code}\n}} </dev/null\nprintf '\\n{_END} %s\\n' $?\n"
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        done = re.compile(rb"\n" + _END.encode() + rb" (\d+)\n")
        while not (m := done.search(out)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BlockFailed(f"did not finish in {timeout_s:g} s; output:\n{out.decode(errors='replace')}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BlockFailed(f"the shell exited; output:\n{out.decode(errors='replace')}")
            out += chunk
        text, status = out[: m.start()].decode(errors="replace"), int(m.group(1))
        if status != 0:
            raise BlockFailed(f"exit status {status}; output:\n{text}")
        return text

    def close(self) -> None:
        """End the shell and everything it started."""
        _kill_group(self.proc)


class Python:
    """One Python interpreter (`python` is its executable); `run(code)` executes a block in the
    namespace of the blocks before it and returns what it printed. Raises BlockFailed on an
    exception or after `timeout_s`."""

    def __init__(self, python: str, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [python, "-u", "-c", _PY_DRIVER],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            text=True,
        )

    def run(self, code: str, timeout_s: float = 120.0) -> str:
        """Execute `code`; return its output."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(code) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout_s)[0]:
            raise BlockFailed(f"did not finish in {timeout_s:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise BlockFailed("the interpreter exited")
        result = json.loads(line)
        if result["err"]:
            raise BlockFailed(f"{result['err']}\noutput:\n{result['out']}")
        return str(result["out"])

    def close(self) -> None:
        """End the interpreter."""
        _kill_group(self.proc)


class Background:
    """A block run as written in its own bash (a server that holds its terminal), its output in
    `log`; `wait_listening` returns once `host:port` accepts connections."""

    def __init__(self, code: str, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", code],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_listening(self, address: str, timeout_s: float = 300.0) -> str:
        """Wait until `address` ("host:port") accepts a TCP connection; return the output so far.
        Raises BlockFailed if the block exits first or the time runs out."""
        host, _, port = address.rpartition(":")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BlockFailed(f"exited with {self.proc.returncode}; output:\n{self.output()}")
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    time.sleep(0.3)  # let it print what it prints once listening
                    return self.output()
            except OSError:
                time.sleep(0.1)
        raise BlockFailed(f"{address} not listening after {timeout_s:g} s; output:\n{self.output()}")

    def output(self) -> str:
        """What the block printed so far."""
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        """Stop the block and everything it started (SIGTERM, then SIGKILL)."""
        _kill_group(self.proc)


def _kill_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
