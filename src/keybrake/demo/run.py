"""The demo from start to end: temporary data directory, sandbox, `keybrake serve`, credential,
vault key, the runaway loop, revoke, audit trail, the same loop without Keybrake, checks, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from keybrake.demo import checks, report
from keybrake.demo.agent import Attempt, attempt, run_loop
from keybrake.demo.checks import usd
from keybrake.demo.process import KeybrakeProcess, ProcessError
from keybrake.demo.scenarios import Scenario
from keybrake.tokens import ADMIN_PREFIX, new_token

TIMEOUT = aiohttp.ClientTimeout(total=30)
SETTLE_S = 15.0  # how long to wait for reconciliation to read prices the vendor gives after the answer


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)  # amounts exact, as the admin API writes them


class DemoError(Exception):
    """The demo could not run, or Keybrake did not behave as the demo expects; the message says what."""


@dataclass(frozen=True)
class DemoOptions:
    """`scenario`; `attempts` (≥ 1) and `cap_usd` (> 0, at most 6 decimals); `keep`: leave the data
    directory in place; `as_json`: one JSON document instead of text; `live`: a progress line
    redrawn in place (a terminal); `pace_s`: a pause between attempts, so a person can follow;
    `send_cap`: the key's `daily_send_cap` (None: none; only for scenarios with `sends`)."""

    scenario: Scenario
    attempts: int
    cap_usd: Decimal
    keep: bool = False
    as_json: bool = False
    live: bool = False
    pace_s: float = 0.0
    send_cap: int | None = None


@dataclass
class Outcome:
    """What a run found (filled as it goes; `report` prints it, `checks` judges it). `objects`: the
    ids of what the sandbox created through Keybrake; `sent` / `direct_sent`: the scenario's
    `sends` through Keybrake and without it (None when the scenario counts none)."""

    run_id: str
    data_dir: Path
    key: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    after_revoke: Attempt | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    moved_usd: Decimal = Decimal(0)
    direct: list[Attempt] = field(default_factory=list)
    direct_moved_usd: Decimal = Decimal(0)
    objects: list[str] = field(default_factory=list)
    sent: int | None = None
    direct_sent: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def stopped_at(self) -> int | None:
        """The first attempt that did not go through (None: all did)."""
        return next((a.number for a in self.attempts if not a.through), None)


# Signals that stop the demo with its cleanup: SIGTERM, and SIGHUP (its terminal was closed).
# Ctrl-C (SIGINT) arrives as KeyboardInterrupt.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def run_demo(opts: DemoOptions) -> Outcome:
    """Run the demo and clean up (also on Ctrl-C, SIGTERM or an error). Returns the outcome, whose
    `problems` list what did not go as expected (empty: it behaved). Raises DemoError when it could
    not run at all; KeyboardInterrupt and asyncio.CancelledError (its message the name of the
    signal in STOP_SIGNALS that stopped it) pass through after cleanup."""
    try:
        data_dir = Path(tempfile.mkdtemp(prefix="keybrake-demo-"))
    except OSError as exc:
        raise DemoError(f"cannot make a temporary directory in {tempfile.gettempdir()}: {exc.strerror}") from None
    out = Outcome("run-demo-" + secrets.token_hex(4), data_dir)
    try:
        asyncio.run(_main(opts, out))
    finally:
        if not opts.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    return out


async def _main(opts: DemoOptions, out: Outcome) -> None:
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    for sig in STOP_SIGNALS:  # the task is cancelled with the signal's name: the cleanup below runs
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel, sig.name)
    sc = opts.scenario
    sandbox = sc.sandbox()
    admin_token = new_token(ADMIN_PREFIX)
    proc = KeybrakeProcess(out.data_dir, admin_token, dict(sc.server_env))
    try:
        await sandbox.start()
        ctx = sc.seed(sandbox)
        report.step(opts, f"sandbox {sc.vendor} API listening on {sandbox.base_url} (in memory, no account)")
        try:
            await proc.start()
        except ProcessError as exc:
            raise DemoError(str(exc)) from None
        report.step(opts, f"keybrake serve listening on {proc.base_url}, data in {out.data_dir}")
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            await _governed_run(opts, out, session, proc.base_url, admin_token, sandbox, ctx)
        out.moved_usd, out.objects = sc.moved_usd(sandbox), list(sc.objects(sandbox))
        out.sent = sc.sends(sandbox) if sc.sends is not None else None
        await _direct_run(opts, out)
        checks.check(out, opts.cap_usd, opts.attempts, opts.send_cap)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DemoError(f"a call failed: {exc or type(exc).__name__}\n{proc.log_tail()}") from None
    finally:
        status = proc.stop()
        await sandbox.stop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        if status not in (None, 0, -signal.SIGTERM):  # uvicorn re-raises SIGTERM after a clean stop
            out.problems.append(f"keybrake serve stopped with status {status}")


async def _admin(
    session: aiohttp.ClientSession, base: str, token: str, method: str, path: str, body: Any = None
) -> Any:
    async with session.request(method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        text = await resp.text()
        try:
            doc = _loads(text)
        except ValueError:
            doc = text[:300]
        if resp.status >= 300 or isinstance(doc, str):
            raise DemoError(f"admin API {method} {path} answered {resp.status}: {doc}")
        return doc


async def _governed_run(
    opts: DemoOptions,
    out: Outcome,
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    sandbox: Any,
    ctx: dict[str, str],
) -> None:
    sc = opts.scenario
    policy = sc.policy(ctx, opts.cap_usd)
    if opts.send_cap is not None:
        policy["daily_send_cap"] = opts.send_cap
    cred = await _admin(session, base, token, "POST", "/v1/credentials", sc.credential(sandbox))
    report.step(
        opts, f"stored the sandbox {sc.vendor} secret as credential '{cred['name']}' ({cred.get('secret_hint')})"
    )
    out.key = await _admin(session, base, token, "POST", "/v1/keys", {
        "vendor": sc.vendor, "credential": cred["name"], "label": f"demo:{sc.name}:{out.run_id}",
        "expires_in": "1h", "metadata": {"agent_run_id": out.run_id}, "policy": policy,
    })  # fmt: skip
    key_id, vault_key = out.key["id"], out.key["key"]
    report.key_issued(opts, out.key)
    proxy = f"{base}/{sc.vendor}"
    progress = report.Progress(opts)

    async def send(n: int) -> Attempt:
        if n > 1 and opts.pace_s:
            await asyncio.sleep(opts.pace_s)
        return await attempt(session, proxy, sc.request(sandbox, ctx, key_id, vault_key), n)

    async def seen(a: Attempt) -> None:
        key = await _admin(session, base, token, "GET", f"/v1/keys/{key_id}")
        usage = key.get("usage", {})
        window, sends = usage.get("total_usd") or {}, usage.get("daily_sends") or {}
        sent = int(sends.get("used") or 0) + int(sends.get("reserved") or 0) if opts.send_cap is not None else None
        progress.seen(a, usd(window.get("used")) + usd(window.get("reserved")), sent)

    out.attempts = await run_loop(opts.attempts, send, seen)
    progress.done()
    await _admin(session, base, token, "DELETE", f"/v1/keys/{key_id}?reason=demo+finished")
    out.after_revoke = await attempt(session, proxy, sc.request(sandbox, ctx, key_id, vault_key), opts.attempts + 1)
    report.revoked(opts, key_id, out.after_revoke)
    out.audit = await _audit(session, base, token, out.run_id)
    if sc.settle is not None:
        sc.settle(sandbox)
        report.step(opts, f"the {sc.vendor} sandbox priced the messages it sent; waiting for Keybrake to reconcile")
        deadline = asyncio.get_running_loop().time() + SETTLE_S
        while _unsettled(out.audit) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.25)
            out.audit = await _audit(session, base, token, out.run_id)
        if _unsettled(out.audit):
            report.step(opts, f"not all reconciled within {SETTLE_S:g} s: those rows show Keybrake's estimate")


def _unsettled(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("verdict") == "allowed" and r.get("cost_source") != "response" for r in rows)


async def _audit(session: aiohttp.ClientSession, base: str, token: str, run_id: str) -> list[dict[str, Any]]:
    """Every audit row of the run, through the admin API's audit query (all pages)."""
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await _admin(session, base, token, "GET", f"/v1/audit?agent_run_id={run_id}&limit=100{cursor}")
        rows.extend(page["data"])
        if not page.get("next_cursor"):
            return rows
        cursor = f"&cursor={page['next_cursor']}"


async def _direct_run(opts: DemoOptions, out: Outcome) -> None:
    """The same loop with the real secret straight at a fresh sandbox: what it moves without Keybrake."""
    sc = opts.scenario
    sandbox = sc.sandbox()
    await sandbox.start()
    try:
        ctx = sc.seed(sandbox)
        secret = sc.real_secret(sandbox)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:

            async def send(n: int) -> Attempt:
                return await attempt(session, sandbox.base_url, sc.request(sandbox, ctx, "", secret), n)

            out.direct = await run_loop(opts.attempts, send)
        out.direct_moved_usd = sc.moved_usd(sandbox)
        out.direct_sent = sc.sends(sandbox) if sc.sends is not None else None
    finally:
        await sandbox.stop()
