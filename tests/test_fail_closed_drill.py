"""Fault drill (issue 12, kind 8): fail closed promptly and finally while the database is unsure.

Two replicas (real `keybrake serve` servers in threads) share a private PostgreSQL the test
starts; replica A reaches it through a relay the test can cut silently (no RST). Agents send
a few seconds of charges while the database is stopped and restarted, then while A's link is
cut and healed. Checked against the fake vendor's own clock: no request is forwarded after its
deadline (client send time + KEYBRAKE_RESERVE_DEADLINE_MS), every refusal comes within the
deadline plus a small margin, `/readyz` answers within its own deadline and says why, the
healthy replica keeps serving while A is cut, and the books are exact.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import psycopg
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, free_port, wait_for
from tests.pg import PrivateCluster
from tests.relay import SilentRelay

pytestmark = [pytest.mark.pg_cluster, pytest.mark.timing]

DEADLINE_S = 1.0
MARGIN_S = 0.5  # a refusal's answer: deadline + this, on a busy test machine
TRANSIT_S = 0.15  # Keybrake's last check → the fake vendor's clock
LEDGER_WAIT_S = 5.0  # a forwarded answer may wait this long for its ledger write (proxy/record.py)


@dataclass
class Sent:
    tag: str
    replica: int
    sent: float
    answered: float
    status: int
    code: str | None


class Load:
    """Agents sending $1 charges, each tagged, to the replicas in turn."""

    def __init__(self, urls: list[str], token: str, agents: int = 6) -> None:
        self.urls, self.token = urls, token
        self.results: list[Sent] = []
        self._stop = threading.Event()
        self._n = 0
        self._lock = threading.Lock()
        self._go = threading.Event()  # cleared: agents send nothing new (`pause`)
        self._go.set()
        self._in_flight = 0
        self._threads = [threading.Thread(target=self._agent, args=(i,), daemon=True) for i in range(agents)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._go.set()
        for t in self._threads:
            t.join(30)

    def _agent(self, i: int) -> None:
        with httpx.Client(timeout=30) as c:
            while not self._stop.is_set():
                self._go.wait()
                with self._lock:
                    self._n += 1
                    self._in_flight += 1
                    tag = f"d{self._n}"
                replica = self._n % len(self.urls)
                sent = time.monotonic()
                try:
                    r = c.post(
                        self.urls[replica] + "/stripe/v1/charges",
                        data={"amount": "100", "currency": "usd", "source": "tok_visa", "description": tag},
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                except httpx.HTTPError:
                    self._answered(Sent(tag, replica, sent, time.monotonic(), 0, "client_error"))
                    continue
                code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
                self._answered(Sent(tag, replica, sent, time.monotonic(), r.status_code, code))

    def _answered(self, sent: Sent) -> None:
        with self._lock:
            self.results.append(sent)
            self._in_flight -= 1

    def pause(self) -> None:
        """Stop sending and wait until every request sent has its answer."""
        self._go.clear()
        wait_for(lambda: self._in_flight == 0, timeout=30)

    def resume(self) -> None:
        self._go.set()

    def ok_since(self, t: float, replica: int | None = None) -> int:
        return sum(1 for r in self.results if r.sent >= t and r.status == 200 and replica in (None, r.replica))


def _arrivals(fake: FakeStripe) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in list(fake.requests):
        if r.method == "POST" and r.path == "/v1/charges":
            tag = parse_qs(r.body.decode())["description"][0]
            assert tag not in out, f"{tag} forwarded twice"
            out[tag] = r.arrived
    return out


def _readyz(url: str) -> tuple[float, int, dict[str, Any]]:
    t = time.monotonic()
    r = httpx.get(url + "/readyz", timeout=10)
    return time.monotonic() - t, r.status_code, r.json()


def _report(results: list[Sent], arrivals: dict[str, float], **extra: Any) -> None:
    """The drill's figures (shown with `pytest -s`, and with a failure)."""
    refused = sorted(r.answered - r.sent for r in results if r.tag not in arrivals)
    late = [arrivals[r.tag] - r.sent for r in results if r.tag in arrivals]
    print(
        f"drill: {len(results)} sent, {len(arrivals)} forwarded (latest {max(late, default=0):.3f} s after send), "
        f"{len(refused)} refused (p50 {refused[len(refused) // 2] if refused else 0:.3f} s, "
        f"max {max(refused, default=0):.3f} s)",
        extra,
    )


def _check_deadlines(results: list[Sent], arrivals: dict[str, float]) -> None:
    """Never forwarded after its deadline; every refusal within the deadline (plus a margin)."""
    for r in results:
        if r.tag in arrivals:
            assert arrivals[r.tag] <= r.sent + DEADLINE_S + TRANSIT_S, (r, arrivals[r.tag] - r.sent)
            assert r.status == 200, r
            assert r.answered - r.sent <= DEADLINE_S + LEDGER_WAIT_S + MARGIN_S, r
        else:
            assert (r.status, r.code) == (503, "enforcement_unavailable"), r
            assert r.answered - r.sent <= DEADLINE_S + MARGIN_S, (r, r.answered - r.sent)


def _admin_get(kb: KeybrakeThread, path: str, **params: Any) -> Any:
    """An admin read, or None while the store is unavailable (a pool larger than the server
    allows may be refused connections for a moment after the drill: 503, nothing changed)."""
    with kb.admin() as c:
        r = c.get(path, params=params)
    if r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable":
        return None
    assert r.status_code == 200, r.text
    return r.json()


def _check_books(kb: KeybrakeThread, key_id: str, arrivals: dict[str, float]) -> None:
    def settled() -> list[dict[str, Any]] | None:
        page = _admin_get(kb, "/v1/audit", key_id=key_id, limit=1000)
        rows = page["data"] if page else None
        return rows if rows is not None and not any(r["verdict"] == "in_flight" for r in rows) else None

    def usage() -> dict[str, Any] | None:
        key = _admin_get(kb, f"/v1/keys/{key_id}")
        u: dict[str, Any] | None = key["usage"]["daily_usd"] if key else None
        return u if u is not None and u["reserved"] == 0 else None

    rows = wait_for(settled, timeout=20)
    verdicts = sorted({(r["verdict"], r.get("reason")) for r in rows if r["verdict"] != "allowed"}, key=str)
    assert sum(r["verdict"] == "allowed" for r in rows) == len(arrivals), verdicts
    assert not any(r["verdict"] == "outcome_unknown" for r in rows)
    used = wait_for(usage, timeout=20)
    assert used["used"] == len(arrivals) == sum(r["cost_usd"] for r in rows)


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    c = PrivateCluster(free_port())
    c.init()
    yield c
    c.close()


def test_restart_and_silent_cut_under_load_fail_closed_promptly_and_finally(
    tmp_path: Path, fake_stripe: FakeStripe, cluster: PrivateCluster
) -> None:
    cluster.start()
    common: dict[str, Any] = {
        "migrate": True,
        "reserve_deadline_ms": int(DEADLINE_S * 1000),
        "pg_pool_size": 8,
        "pg_connect_timeout_s": 1,
        "pg_statement_timeout_ms": 1500,  # the watchdog closes a silent connection after 2.5 s
        "pg_idle_tx_timeout_ms": 500,
        "master_key": base64.b64encode(os.urandom(32)).decode(),  # one install, two replicas
    }
    with SilentRelay(cluster.port) as relay:
        cut_url = f"postgresql://postgres@127.0.0.1:{relay.port}/postgres"
        with (
            KeybrakeThread(tmp_path / "a", database_url=cut_url, **common) as a,
            KeybrakeThread(tmp_path / "b", database_url=cluster.url, **common) as b,
        ):
            a.add_credential(fake_stripe.base_url)
            key = a.issue({"daily_usd_cap": 100000})
            with Load([a.url, b.url], key["key"]) as load:
                wait_for(lambda: load.ok_since(0) >= 20)

                # (a) a PostgreSQL restart: refused within the deadline, nothing forwarded later
                cluster.stop("immediate")
                time.sleep(DEADLINE_S)
                for url in (a.url, b.url):  # /readyz answers within its own deadline, with a reason
                    took, status, doc = _readyz(url)
                    assert took <= 1.0 + MARGIN_S and status == 503, (took, status, doc)
                    assert doc["status"] == "unavailable" and "postgresql" in doc["reason"], doc
                time.sleep(2.0)
                cluster.start()
                up = time.monotonic()
                # (c) service resumes promptly: the reconnect backoff is capped
                wait_for(lambda: load.ok_since(up, 0) >= 3 and load.ok_since(up, 1) >= 3, timeout=10)
                resumed = min(r.answered for r in load.results if r.sent >= up and r.status == 200) - up
                assert resumed <= 1.0 + DEADLINE_S + MARGIN_S, resumed
                assert _readyz(a.url)[1] == 200

                # (b) replica A silently cut from the database (no RST)
                time.sleep(1.0)
                relay.cut()
                cut = time.monotonic()
                took, status, doc = _readyz(a.url)
                assert took <= 1.0 + MARGIN_S and status == 503 and doc["reason"], (took, status, doc)
                time.sleep(4.0)
                relay.heal()
                healed = time.monotonic()
                wait_for(lambda: load.ok_since(healed, 0) >= 3, timeout=15)
            # the healthy replica kept serving while A was cut (A's transactions held no lock long)
            during = [r for r in load.results if r.replica == 1 and cut + 1.0 <= r.sent <= healed]
            assert during and sum(r.status == 200 for r in during) >= 0.8 * len(during), during
            time.sleep(2.0)  # anything still in flight anywhere would arrive now
            arrivals = _arrivals(fake_stripe)
            _report(load.results, arrivals, resumed_s=round(resumed, 3))
            _check_deadlines(load.results, arrivals)
            # sent to A while cut, with the whole deadline inside the cut: all refused
            refused_in_a_cut = [r for r in load.results if r.replica == 0 and cut <= r.sent <= healed - DEADLINE_S]
            assert refused_in_a_cut and all(r.status == 503 for r in refused_in_a_cut)
            assert any(r.status == 503 for r in load.results if r.sent < up)
            _check_books(b, key["id"], arrivals)


def test_a_pool_larger_than_the_server_allows_still_refuses_within_the_deadline(
    tmp_path: Path, fake_stripe: FakeStripe, cluster: PrivateCluster
) -> None:
    """(c) pool_size 16 against a server allowing 7 connections, counters locked for 4 s: every
    refusal within the documented 2 s deadline (it was p50 8 s), none forwarded late."""
    cluster.start(max_connections=7)
    deadline_s = 2.0
    with KeybrakeThread(tmp_path / "a", database_url=cluster.url, migrate=True, pg_pool_size=16) as kb:
        assert kb.settings.reserve_deadline_ms == deadline_s * 1000  # the documented default
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 100000})
        # Another session (connected first: the pool takes every slot the server has left)
        # holds the counters for 4 s, so reservations hold their connections and the rest queue.
        locker = psycopg.connect(cluster.url)
        with Load([kb.url], key["key"], agents=24) as load:
            wait_for(lambda: load.ok_since(0) >= 10)
            # Every agent's next request starts under the lock (none is caught mid-settlement,
            # where it waits for the lock's end and is then answered 200): the refusals are certain.
            load.pause()
            locker.execute("LOCK TABLE counters IN ACCESS EXCLUSIVE MODE")
            held = time.monotonic()
            load.resume()
            time.sleep(4.0)
            locker.rollback()
            released = time.monotonic()
            wait_for(lambda: load.ok_since(released) >= 10, timeout=15)
        arrivals = _arrivals(fake_stripe)
        _report(load.results, arrivals)
        refused = [r.answered - r.sent for r in load.results if r.status == 503]
        assert len(refused) >= 5, len(refused)  # the lock made requests wait: the test bites
        refused.sort()
        assert refused[len(refused) // 2] <= deadline_s + MARGIN_S and refused[-1] <= deadline_s + MARGIN_S, refused
        for r in load.results:
            if r.tag in arrivals:
                assert arrivals[r.tag] <= r.sent + deadline_s + TRANSIT_S, (r, arrivals[r.tag] - r.sent)
            else:
                assert (r.status, r.code) == (503, "enforcement_unavailable"), r
        assert any(held <= r.sent <= released for r in load.results)
        locker.close()
        _check_books(kb, key["id"], arrivals)
