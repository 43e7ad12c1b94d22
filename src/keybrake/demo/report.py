"""What the demo prints: steps, a live progress line (or one plain line per attempt), the revoke,
the audit trail, the comparison with the same loop without Keybrake, and the verdict."""

from __future__ import annotations

import shutil
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

from keybrake.demo.agent import Attempt
from keybrake.demo.checks import usd

if TYPE_CHECKING:
    from keybrake.demo.run import DemoOptions, Outcome


def money(value: Decimal) -> str:
    """`$1,234.50`, or `$0.0060` below a dollar when cents are not enough (at least 4 decimals, as
    many as it has up to 6), so the figures of one run line up."""
    if value == value.quantize(Decimal("0.01")) or abs(value) >= 1:
        return f"${value:,.2f}"
    places = max(4, -value.normalize().as_tuple().exponent)  # type: ignore[operator]  # finite: an int
    return f"${value:.{min(places, 6)}f}"


def step(opts: DemoOptions, text: str) -> None:
    """One setup step, `  · text` (nothing with --json)."""
    if not opts.as_json:
        click.echo(f"  · {text}")


def key_issued(opts: DemoOptions, key: dict[str, Any]) -> None:
    caps = ", ".join(f"{k} {money(usd(v))}" for k, v in key["policy"].items() if k.endswith("usd_cap") and v)
    if key["policy"].get("daily_send_cap") is not None:
        caps += f", daily_send_cap {key['policy']['daily_send_cap']} {opts.scenario.sends_word}"
    step(opts, f"issued vault key {key['id']} (label {key['label']}) with {caps}")
    if not opts.as_json:
        sc = opts.scenario
        click.echo(f"\nThe agent: {sc.story}.\nIt loops {opts.attempts} times: {sc.call_text}\n")


class Progress:
    """The loop as it happens: on a terminal one line redrawn in place, plus a line of its own for
    the first refusal; otherwise one plain line per attempt. `used` is what the key's cap counts
    after the attempt (USD), `sent` what the send cap counts (None: the key has none), read by the
    caller from the admin API."""

    def __init__(self, opts: DemoOptions) -> None:
        self.opts = opts
        self.through = self.refused = 0
        self.first_refusal: Attempt | None = None

    def seen(self, a: Attempt, used: Decimal, sent: int | None = None) -> None:
        if a.through:
            self.through += 1
        else:
            self.refused += 1
        if self.opts.as_json:
            return
        n = len(str(self.opts.attempts))
        what = f"{a.status} through" if a.through else f"{a.status} {a.code or 'refused'}"
        line = (
            f"  attempt {a.number:>{n}}/{self.opts.attempts}  {what:<24}  cap used {money(used)} of "
            f"{money(self.opts.cap_usd)}{self._sends(sent)}  ({self.through} through, {self.refused} refused)"
        )
        stopped = not a.through and self.first_refusal is None
        if stopped:
            self.first_refusal = a
        if self.opts.live:
            width = shutil.get_terminal_size().columns
            sys.stdout.write("\r\033[K" + line[: max(width - 1, 20)])  # a wrapped line could not be redrawn
            if stopped:
                sys.stdout.write(f"\n  stopped by the cap at attempt {a.number}: {a.message}\n")
            sys.stdout.flush()
        else:
            click.echo(line)
            if stopped:
                click.echo(f"  stopped by the cap at attempt {a.number}: {a.message}")

    def _sends(self, sent: int | None) -> str:
        return "" if sent is None else f", sends {sent} of {self.opts.send_cap}"

    def done(self) -> None:
        if self.opts.live and not self.opts.as_json:
            sys.stdout.write("\n")
            sys.stdout.flush()


def revoked(opts: DemoOptions, key_id: str, a: Attempt) -> None:
    step(opts, f"revoked {key_id}; the agent's next call got {a.status} {a.code}: {a.message}")


def _maybe(value: Any) -> str:
    return "-" if value is None else money(usd(value))


def audit_table(out: Outcome) -> None:
    """The run's audit rows in call order: attempt, verdict, status, error code, cost, reserved, cap used."""
    order = {a.request_id: a.number for a in [*out.attempts, *([out.after_revoke] if out.after_revoke else [])]}
    rows = sorted(out.audit, key=lambda r: (order.get(r.get("id"), 1 << 30), str(r.get("ts"))))
    cols = ("#", "ts", "verdict", "status", "error_code", "cost_usd", "cost_source", "reserved_usd", "cap_used_after")
    cells = [
        [
            str(order.get(r.get("id"), "?")),
            str(r.get("ts", ""))[11:23],
            str(r.get("verdict")),
            str(r.get("status")),
            str(r.get("error_code") or ""),
            money(usd(r.get("cost_usd"))),
            str(r.get("cost_source") or ""),
            money(usd(r.get("reserved_usd"))),
            _maybe(r.get("cap_usage_after_usd")),
        ]
        for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
    for row in [list(cols), *cells]:
        click.echo(("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))).rstrip())


def refusals(opts: DemoOptions, out: Outcome) -> str:
    """`N refused at the $1.00 cap`: the cap(s) the refusals cite (USD or send cap), or, when none
    was refused, every cap the key has."""
    word = opts.scenario.sends_word or "sends"
    named = {"spend_cap_exceeded": f"{money(opts.cap_usd)} cap"}
    if opts.send_cap is not None:
        named["send_cap_exceeded"] = f"{opts.send_cap}-{word.rstrip('s')} cap"
    hit = [code for code in named if any(a.code == code for a in out.attempts)] or list(named)
    count = sum(1 for a in out.attempts if a.code in named)
    return f"{count} refused at the " + " and the ".join(named[c] for c in hit)


def summary(opts: DemoOptions, out: Outcome, stopped_at: int | None) -> None:
    """The audit trail, the money with and without Keybrake, and the verdict (text)."""
    if any(r.get("cost_source") == "estimate" for r in out.audit):
        click.echo("\n(cost_source estimate: Keybrake's reservation stands until the vendor's price is read)")
    click.echo(f"\nAudit trail of {out.run_id} (GET /v1/audit?agent_run_id={out.run_id}): {len(out.audit)} rows")
    audit_table(out)
    through = sum(1 for a in out.attempts if a.through)
    direct_through = sum(1 for a in out.direct if a.through)
    word = opts.scenario.sends_word
    direct_sent = "" if out.direct_sent is None or not word else f"{out.direct_sent} {word} sent, "
    sent = "" if out.sent is None or not word else f"{out.sent} {word} sent, "
    click.echo(
        f"\nWithout Keybrake: the same {opts.attempts} calls straight at a fresh sandbox — {direct_through} "
        f"accepted, {direct_sent}{money(out.direct_moved_usd)} moved."
    )
    click.echo(
        f"With Keybrake:    {through} went through, {sent}{money(out.moved_usd)} moved; {refusals(opts, out)}; "
        "the key revoked."
    )
    unsent = (
        "" if out.direct_sent is None or out.sent is None or not word else f" and {out.direct_sent - out.sent} {word}"
    )
    click.echo(f"Kept from moving: {money(out.direct_moved_usd - out.moved_usd)}{unsent}.")
    if opts.keep:
        click.echo(f"\nData directory kept: {out.data_dir} (keybrake/ holds the store, serve.log the server's log)")
    if out.problems:
        click.echo("\nThe demo did not behave as expected:", err=True)
        for p in out.problems:
            click.echo(f"  - {p}", err=True)
    else:
        if stopped_at is None:
            click.echo(f"\nOK: {opts.attempts} calls stayed within the {money(opts.cap_usd)} cap, and the audit trail "
                       "has every call.")  # fmt: skip
        else:
            click.echo(f"\nOK: the cap stopped the loop at attempt {stopped_at}, and the audit trail has every call.")


def as_json(opts: DemoOptions, out: Outcome, stopped_at: int | None) -> dict[str, Any]:
    """The run as one JSON document (amounts as decimal numbers, USD)."""

    def one(a: Attempt) -> dict[str, Any]:
        return {"attempt": a.number, "status": a.status, "code": a.code, "audit_id": a.request_id}

    return {
        "scenario": opts.scenario.name, "run_id": out.run_id, "cap_usd": opts.cap_usd, "attempts": opts.attempts,
        "send_cap": opts.send_cap, "with_keybrake_sent": out.sent, "without_keybrake_sent": out.direct_sent,
        "key_id": out.key.get("id"), "stopped_at": stopped_at, "calls": [one(a) for a in out.attempts],
        "after_revoke": one(out.after_revoke) if out.after_revoke else None, "audit": out.audit,
        "with_keybrake_usd": out.moved_usd, "without_keybrake_usd": out.direct_moved_usd,
        "kept_from_moving_usd": out.direct_moved_usd - out.moved_usd, "ok": not out.problems,
        "problems": out.problems, "data_dir": str(out.data_dir) if opts.keep else None,
    }  # fmt: skip
