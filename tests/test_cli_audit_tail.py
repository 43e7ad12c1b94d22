"""`keybrake audit tail -f` against a real `keybrake serve`: each row printed once as it arrives,
none of the rows from before the tail printed as new, and an in-flight row printed again, marked
as an update, when it completes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.stripe_server.server import FakeStripeThread
from tests.harness import ADMIN_TOKEN, REAL_SECRET, database_for, free_port, spawn_keybrake

pytestmark = pytest.mark.multiprocess
H = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Tail:
    """`keybrake audit tail` as a process; `lines(n)` waits for its next n lines."""

    def __init__(self, data: Path, *args: str) -> None:
        env = {**os.environ, **({"KEYBRAKE_DATABASE_URL": url} if (url := database_for(data)) else {})}
        cmd = [sys.executable, "-m", "keybrake.cli", "audit", "tail", "--data-dir", str(data), *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.out: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.put(line.rstrip("\n"))

    def lines(self, n: int, timeout_s: float = 20.0) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < n:
            try:
                got.append(self.out.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"wanted {n} lines, got {got}") from None
        return got

    def quiet(self, for_s: float) -> list[str]:
        """Whatever it prints in the next `for_s` seconds."""
        time.sleep(for_s)
        extra = []
        while not self.out.empty():
            extra.append(self.out.get())
        return extra

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, FakeStripeThread, str]]:
    """(base URL, data dir, fake Stripe thread, vault key) of a running keybrake serve."""
    data, port = tmp_path / "data", free_port()
    with FakeStripeThread(secret=REAL_SECRET) as fake:
        proc = spawn_keybrake(data, port, env={"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN})
        try:
            base = f"http://127.0.0.1:{port}"
            cred = {"vendor": "stripe", "name": "default", "secret": REAL_SECRET, "base_url": fake.base_url}
            assert httpx.post(f"{base}/v1/credentials", headers=H, json=cred).status_code == 201
            policy = {"daily_usd_cap": 1000, "allowed_endpoints": ["POST /v1/charges"]}
            r = httpx.post(f"{base}/v1/keys", headers=H, json={"vendor": "stripe", "label": "t:tail", "policy": policy})
            assert r.status_code == 201, r.text
            yield base, data, fake, r.json()["key"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _denied(base: str, key: str) -> str:
    """One request the key's allowlist refuses (403, one audit row); returns the row's id."""
    r = httpx.get(f"{base}/stripe/v1/customers", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403, r.text
    return r.headers["x-keybrake-request-id"]


def test_follow_prints_each_new_row_once_and_no_older_row(
    server: tuple[str, Path, FakeStripeThread, str],
) -> None:
    base, data, _, key = server
    before = [_denied(base, key) for _ in range(12)]  # all within a second: older than -n 3 shows
    tail = Tail(data, "-n", "3", "-f", "--interval", "0.2")
    try:
        # a header names the columns once, the cost with its unit
        assert tail.lines(1) == ["ts  id  key_id  method  path  verdict  status  cost_usd"]
        first = tail.lines(3)
        assert [line.split()[1] for line in first] == before[-3:]
        assert tail.quiet(1.0) == []  # the nine older rows are not "new"
        after = [_denied(base, key) for _ in range(4)]
        new = tail.lines(4)
        assert [line.split()[1] for line in new] == after
        assert all("denied_endpoint" in line and "(update)" not in line for line in new), new
        assert tail.quiet(1.5) == []  # nothing printed twice
    finally:
        tail.stop()


def test_an_in_flight_row_is_printed_again_when_it_completes(
    server: tuple[str, Path, FakeStripeThread, str],
) -> None:
    base, data, fake, key = server
    first = _denied(base, key)
    tail = Tail(data, "-n", "1", "-f", "--interval", "0.2")
    answers: list[httpx.Response] = []
    try:
        assert (
            tail.lines(2)[1].split()[1] == first
        )  # after the header  # the tail has read the log: what follows is new
        fake.hold()
        body = {"amount": "500", "currency": "usd", "source": "tok_visa"}
        call = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{base}/stripe/v1/charges", headers={"Authorization": f"Bearer {key}"}, data=body, timeout=30
                )
            )
        )
        call.start()
        (flight,) = tail.lines(1)
        assert " in_flight " in f" {flight} " and "(update)" not in flight, flight
        fake.release()
        call.join(timeout=20)
        assert answers and answers[0].status_code == 200, answers
        row_id = answers[0].headers["x-keybrake-request-id"]
        assert flight.split()[1] == row_id
        (done,) = tail.lines(1)
        assert done.split()[1] == row_id and done.endswith("(update)"), done
        assert done.split()[5:8] == ["allowed", "200", "5"], done
        assert tail.quiet(1.0) == []
    finally:
        fake.release()
        tail.stop()


@pytest.mark.parametrize(("args", "named"), [(["-n", "-1"], "-n"), (["-f", "--interval", "0"], "--interval")])
def test_bad_options_are_refused_naming_the_option(tmp_path: Path, args: list[str], named: str) -> None:
    from click.testing import CliRunner

    from keybrake.cli.audit import audit

    result = CliRunner().invoke(audit, ["tail", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and named in result.output, result.output
