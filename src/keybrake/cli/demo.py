"""`keybrake demo`: a runaway agent stopped by a cap, against local sandbox vendors (docs/demo.md)."""

from __future__ import annotations

import asyncio
import signal
import sys
from decimal import Decimal, InvalidOperation

import click

from keybrake.demo import SCENARIOS, DemoError, DemoOptions, report, run_demo


def _cap(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        cap = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount in USD, e.g. 100 or 0.25", param_hint="--cap") from None
    if not cap.is_finite() or cap <= 0 or cap != cap.quantize(Decimal("0.000001")) or cap > 1_000_000:
        raise click.BadParameter(
            f"{value!r}: give a USD amount above 0, at most 1000000, with at most 6 decimals", param_hint="--cap"
        )
    return cap


@click.command(short_help="Watch a cap stop a runaway agent.")
@click.option(
    "--scenario",
    type=click.Choice(sorted(SCENARIOS)),
    default="refund-loop",
    show_default=True,
    help="refund-loop: the same $25.00 Stripe refund again and again; sms-loop: the same Twilio SMS; "
    "email-loop: the same Resend email to three recipients.",
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 100),
    default=None,
    help="How many times the agent makes the call, 1 to 100 (default 20).",
)
@click.option(
    "--cap", "cap_text", default=None, help="The vault key's USD cap (refund-loop 100, sms-loop 0.10, email-loop 1)."
)
@click.option(
    "--send-cap",
    type=click.IntRange(0, 1_000_000),
    default=None,
    help="The vault key's daily_send_cap: messages (sms-loop) or email recipients (email-loop; default 20).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary data directory (store and server log); print where.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option(
    "--pace",
    type=click.FloatRange(0, 10),
    default=None,
    help="Seconds between two attempts (default 0.15 on a terminal, 0 otherwise).",
)
def demo(
    scenario: str,
    attempts: int | None,
    cap_text: str | None,
    send_cap: int | None,
    keep: bool,
    as_json: bool,
    pace: float | None,
) -> None:
    """Watch a cap stop a runaway agent: no vendor account, no network, nothing left behind.

    Starts Keybrake on a temporary data directory and free loopback ports, with a local sandbox
    vendor; stores a sandbox secret, issues a vault key with a USD cap (and, for email-loop or with
    --send-cap, a daily send cap), runs an agent that repeats
    one money-moving call, revokes the key and prints the audit trail and what the loop would
    have moved without Keybrake. Exit 0 when Keybrake behaved as expected, 1 otherwise.
    """
    sc = SCENARIOS[scenario]
    cap = _cap(cap_text) or sc.cap_usd
    if send_cap is not None and sc.sends is None:
        raise click.BadParameter(
            f"{sc.name}'s vendor ({sc.vendor}) has no daily_send_cap; use it with sms-loop or email-loop",
            param_hint="--send-cap",
        )
    live = sys.stdout.isatty() and not as_json
    opts = DemoOptions(sc, attempts or sc.attempts, cap, keep=keep, as_json=as_json, live=live,
                       pace_s=(0.15 if live else 0.0) if pace is None else pace,
                       send_cap=sc.send_cap if send_cap is None else send_cap)  # fmt: skip
    if not as_json:
        sends = "" if opts.send_cap is None else f", send cap {opts.send_cap} {sc.sends_word}"
        click.echo(f"Keybrake demo: {sc.name} (cap {report.money(cap)}{sends}, {opts.attempts} attempts)")
    try:
        out = run_demo(opts)
    except DemoError as exc:
        raise click.ClickException(f"the demo could not run: {exc}") from None
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        # 128 + the signal, as a shell reports it: Ctrl-C (SIGINT) 130, SIGTERM 143, SIGHUP 129.
        data = "the data directory is kept (named above)" if keep else "the temporary data is removed"
        click.echo(f"\ninterrupted: Keybrake and the sandbox are stopped, {data}", err=True)
        sys.exit(128 + _signal_of(exc))
    if as_json:
        from keybrake.cli.common import json_text

        click.echo(json_text(report.as_json(opts, out, out.stopped_at), indent=2))
    else:
        report.summary(opts, out, out.stopped_at)
    if out.problems:
        sys.exit(1)


def _signal_of(exc: BaseException) -> int:
    """The signal that stopped the demo: SIGINT for Ctrl-C, else the one a cancellation names
    (`run.STOP_SIGNALS`), SIGTERM when it names none."""
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    name = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    return signal.Signals[name] if name in signal.Signals.__members__ else signal.SIGTERM
