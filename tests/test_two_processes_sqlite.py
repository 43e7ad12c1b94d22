"""Two `keybrake serve` processes on one SQLite data dir (docs/operations.md, both cores): the
cap check is one `BEGIN IMMEDIATE` transaction on the shared file, so concurrent requests
through both never overshoot a cap, and each process sees the other's rows."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, free_port, spawn_keybrake, wait_for
from tests.test_replicas import CHARGE, _fire, _upstream

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(os.environ.get("KEYBRAKE_TEST_STORE", "sqlite") != "sqlite", reason="embedded SQLite only"),
]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _admin(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=30)


@pytest.mark.parametrize(
    ("policy", "method", "path", "data"),
    [
        ({"daily_usd_cap": 25}, "POST", "/v1/charges", CHARGE),
        ({"max_requests_per_hour": 25}, "GET", "/v1/customers", None),
    ],
    ids=["usd_cap", "max_requests_per_hour"],
)
def test_two_processes_on_one_data_dir_let_exactly_25_through(
    tmp_path: Path, fake_stripe: FakeStripe, policy: dict[str, Any], method: str, path: str, data: Any
) -> None:
    data_dir = tmp_path / "data"
    env = {"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, port in enumerate(ports):  # the second starts once the first has created the data dir
            procs.append(
                spawn_keybrake(data_dir, port, env=env, log_path=tmp_path / f"p{i}.log", args=("--shared-data-dir",))
            )
        with _admin(ports[0]) as c:
            r = c.post(
                "/v1/credentials",
                json={"vendor": "stripe", "name": "default", "secret": "sk_test_fake_secret_1234567890",
                      "base_url": fake_stripe.base_url},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            r = c.post("/v1/keys", json={"vendor": "stripe", "label": "two:procs", "policy": policy})
            assert r.status_code == 201, r.text
            key = r.json()
        urls = [f"http://127.0.0.1:{p}/stripe" for p in ports]
        statuses = asyncio.run(_fire(urls, key["key"], 200, method, path, data))
        assert statuses.count(200) == 25, sorted(set(statuses))
        assert statuses.count(429) == 175
        assert _upstream(fake_stripe, method, path) == 25

        def rows_through(port: int) -> list[dict[str, Any]] | None:
            with _admin(port) as c:
                got = c.get("/v1/audit", params={"key_id": key["id"], "limit": 1000}).json()["data"]
            return got if len(got) == 200 else None

        for port in ports:  # each process reads every row, both processes' answers
            verdicts = [r["verdict"] for r in wait_for(functools.partial(rows_through, port))]
            assert verdicts.count("allowed") == 25 and verdicts.count("cap_exceeded") == 175
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
