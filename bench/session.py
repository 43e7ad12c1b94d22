"""One bench run's session: its secrets, the processes it starts, the targets it measures and
the audit rows they leave."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from children import (
    BENCH_DIR,
    HOST,
    Child,
    SetupError,
    free_port,
    log,
    spawn,
    start_fake_upstream,
    start_keybrake,
    upstream_stats,
)
from pg_wire import WireCounts, remote_json, remote_totals
from report import outcome_summary
from targets import TWILIO_BODY, TWILIO_PATH, Target, audit_summary, provision, sanity_check


@dataclass
class Run:
    """One bench run: its secrets, the processes it started and the targets it measures."""

    workdir: Path
    secret: str = field(default_factory=lambda: "sk_test_bench" + secrets.token_hex(12))
    twilio_secret: dict[str, str] = field(
        default_factory=lambda: {"account_sid": "AC" + secrets.token_hex(16), "auth_token": secrets.token_hex(16)}
    )
    admin_token: str = field(default_factory=lambda: "bench-admin-" + secrets.token_urlsafe(32))
    children: list[Child] = field(default_factory=list)
    upstream: Child | None = None
    upstream_base: str = ""
    kb: Child | None = None
    kb_base: str = ""
    # vendor -> [direct, keybrake] targets of the steady scenario
    steady_targets: dict[str, list[Target]] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    sanity: dict[str, dict[str, Any]] = field(default_factory=dict)
    # --pg-url: Keybrake's store is a fresh database on that server (dropped at the end);
    # --pg-wire: Keybrake reaches it through a relay process (bench/pg_wire.py) that counts the
    # traffic and answers its counters on `relay_control` (a port).
    pg_admin_url: str = ""
    pg_database: str = ""
    database_url: str = ""
    relay_control: int = 0

    def wire_totals(self) -> WireCounts:
        """The relay's counters so far (every connection). Raises OSError if it does not answer."""
        return remote_totals(self.relay_control)

    def wire_json(self) -> dict[str, Any] | None:
        """The relay's counters, totals and per connection (None without --pg-wire or relay)."""
        if not self.relay_control:
            return None
        with contextlib.suppress(OSError, ValueError):
            return remote_json(self.relay_control)
        return None


def start_postgres(run: Run, args: argparse.Namespace) -> None:
    """With --pg-url: create Keybrake's database (migrated by `keybrake serve` at start-up); with
    --pg-wire also start the counting relay in front of the server. Raises SetupError."""
    import psycopg
    from psycopg import sql

    run.pg_admin_url = args.pg_url
    name = f"kb_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(args.pg_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise SetupError(f"cannot create the bench database at {args.pg_url}: {exc}") from exc
    run.pg_database = name
    run.database_url = args.pg_url.rsplit("/", 1)[0] + "/" + name
    log(f"PostgreSQL store: database {name}")
    if args.pg_wire:
        _start_relay(run, args)


def _start_relay(run: Run, args: argparse.Namespace) -> None:
    import sys

    parts = urllib.parse.urlsplit(args.pg_url)
    port, run.relay_control = free_port(), free_port()
    argv = [sys.executable, str(BENCH_DIR / "pg_wire.py"), "--port", str(port), "--control-port"]
    argv += [str(run.relay_control), "--target-host", parts.hostname or "127.0.0.1"]
    argv += ["--target-port", str(parts.port or 5432)]
    child = spawn("pg-wire relay", argv, dict(os.environ), run.workdir / "pg_wire.log")
    run.children.append(child)
    deadline = time.monotonic() + args.startup_timeout
    while True:
        try:
            run.wire_totals()
            break
        except OSError as exc:
            if not child.alive() or time.monotonic() > deadline:
                raise SetupError(f"the pg-wire relay did not start ({exc}):\n{child.log_tail()}") from None
            time.sleep(0.1)
    db = urllib.parse.urlsplit(run.database_url)
    userinfo = db.netloc.rpartition("@")[0]
    run.database_url = urllib.parse.urlunsplit(db._replace(netloc=f"{userinfo}@{HOST}:{port}".lstrip("@")))
    log(f"pg-wire relay pid {child.pid} on {HOST}:{port} -> {parts.hostname}:{parts.port or 5432}")


def stop_postgres(run: Run) -> None:
    """Drop the bench database (after Keybrake and the relay have stopped)."""
    import psycopg
    from psycopg import sql

    if run.pg_database:
        with contextlib.suppress(psycopg.Error), psycopg.connect(run.pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(run.pg_database)))


def start_direct(run: Run, args: argparse.Namespace) -> None:
    """Start the fake upstream; each vendor's direct target, checked with one request."""
    upstream, run.upstream_base = start_fake_upstream(run.secret, run.workdir, args.startup_timeout, run.twilio_secret)
    run.upstream = upstream
    run.children.append(upstream)
    log(f"fake upstream pid {upstream.pid} at {run.upstream_base}")
    sid, auth_token = run.twilio_secret["account_sid"], run.twilio_secret["auth_token"]
    direct = {
        "stripe": Target("direct", f"{run.upstream_base}/v1/charges", run.secret),
        "twilio": Target(
            "direct",
            run.upstream_base + TWILIO_PATH.format(sid),
            f"{sid}:{auth_token}",
            TWILIO_BODY,
            ok_status=201,
            basic=True,
            vendor="twilio",
        ),
    }
    run.steady_targets = {v: [direct[v]] for v in args.scenarios}
    for vendor in args.scenarios:
        run.sanity[f"{vendor}/direct"] = sanity_check(direct[vendor])


def start_proxied(run: Run, args: argparse.Namespace, keybrake_exe: str) -> None:
    """Start `keybrake serve`; per vendor a vault key and a proxied target, checked with one request."""
    upstream_port = int(run.upstream_base.rsplit(":", 1)[1])
    env = {"KEYBRAKE_DATABASE_URL": run.database_url} if run.database_url else None
    kb, run.kb_base = start_keybrake(
        keybrake_exe, upstream_port, run.workdir, run.admin_token, args.startup_timeout, env
    )
    run.kb = kb
    run.children.append(kb)
    log(f"keybrake pid {kb.pid} at {run.kb_base} (data dir {run.workdir / 'data'})")
    for vendor in args.scenarios:
        if vendor == "stripe":
            vault_key, run.key_ids[vendor] = provision(run.kb_base, run.admin_token, run.upstream_base, run.secret)
            proxied = Target("keybrake", f"{run.kb_base}/stripe/v1/charges", vault_key)
        else:
            vault_key, vk_id = provision(run.kb_base, run.admin_token, run.upstream_base, run.twilio_secret, "twilio")
            if not vk_id.startswith("vk_"):
                raise SetupError(f"POST /v1/keys (twilio) answered no usable key id: {vk_id!r}")
            run.key_ids[vendor] = vk_id
            # Basic vk_id:vault_key, and the key id where the Account SID goes; Keybrake swaps both
            url = run.kb_base + "/twilio" + TWILIO_PATH.format(vk_id)
            proxied = Target(
                "keybrake", url, f"{vk_id}:{vault_key}", TWILIO_BODY, ok_status=201, basic=True, vendor="twilio"
            )
        log(f"{vendor}: issued vault key {vault_key[:16]}... (id {run.key_ids[vendor]})")
        try:
            run.sanity[f"{vendor}/keybrake"] = sanity_check(proxied)
        except SetupError as exc:  # say why: Keybrake's audit row and its log
            with contextlib.suppress(SetupError, OSError, urllib.error.URLError):
                row = audit_summary(run.kb_base, run.admin_token, run.key_ids[vendor])["first_problem"]
                exc.args = (f"{exc}\naudit row: {json.dumps(row)}",)
            raise SetupError(f"{exc}\nkeybrake log tail:\n{kb.log_tail(20)}") from None
        run.steady_targets[vendor].append(proxied)


def audit_rows(run: Run) -> dict[str, Any]:
    """4. Per vendor, the bench key's audit rows against the requests Keybrake forwarded upstream."""
    audit: dict[str, Any] = {}
    time.sleep(0.5)  # let requests wrk left in flight finish
    stats = upstream_stats(run.upstream_base)
    counters = {"stripe": "charges", "twilio": "messages"}
    for vendor, key_id in run.key_ids.items():
        n = counters[vendor]
        forwarded = stats[n] - stats[f"{n}_direct"]
        summary: dict[str, Any] = {}
        for _ in range(10):  # an async audit writer may lag a little
            summary = audit_summary(run.kb_base, run.admin_token, key_id)
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
            f"{forwarded}; {outcome_summary(audit[vendor])}; with a vendor request id: "
            f"{summary['with_vendor_request_id']}"
        )
        if summary["first_problem"]:
            log(f"{vendor}: first audit row that is not an allowed 2xx: {summary['first_problem']}")
    audit["audit_rows"] = sum(audit[v]["audit_rows"] for v in run.key_ids)
    audit["forwarded"] = sum(audit[v]["forwarded"] for v in run.key_ids)
    audit["upstream_stats"] = stats
    audit["sanity"] = run.sanity
    return audit
