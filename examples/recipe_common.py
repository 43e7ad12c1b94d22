"""What every recipe shares: the tool's STOP answer, the run read back from Keybrake's audit log, its printout, and the
command line (`--url`, `--admin-token`, `--credential` and their environment defaults).

Each recipe imports it as `examples.recipe_common`; run as a script (`python examples/<recipe>.py`,
from any directory) a recipe first puts the repository root on `sys.path`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from keybrake_client import Denial, KeybrakeError, Run
from keybrake_client.models import AuditRow

STOP = "STOP"  # how a tool answer that must end the run begins


def stop_answer(d: Denial, thing: str, *, verb: str = "make", limit: str = "spending") -> str:
    """The tool's final answer to the model after a denial that retrying cannot fix: `thing` is
    what was refused ("refund", "text"), `verb` how another is made, `limit` the limit's name."""
    return (
        f"{STOP}: Keybrake refused this {thing} ({d.code}; retrying cannot help). {d.message} "
        f"Do not retry it and {verb} no other {thing} in this run: tell the user the {limit} limit was "
        "reached and end the run."
    )


@dataclass
class Report:
    """The run as Keybrake's audit log tells it."""

    run_id: str
    key_id: str
    output: str  # the model's last word, or how the framework's limit ended the run
    forwarded: int  # requests Keybrake sent to the vendor
    refused: list[tuple[str, str]]  # (Keybrake code, its message)
    spent_usd: Decimal  # what the run's calls moved or cost (what caps count)
    rows: list[AuditRow]  # oldest first
    deduplicated: int = 0  # repeats Keybrake answered itself, not sent (dedup_window_seconds)


def reconstruct(run: Run, output: str) -> Report:
    """Read the run back from the audit log: every request of its key, forwarded, replayed or refused."""
    rows = run.audit()
    forwarded = sum(1 for r in rows if r.upstream_status is not None)
    refused = [(r.error_code, r.reason or "") for r in rows if r.error_code]
    dedup = sum(1 for r in rows if r.verdict == "deduplicated")
    return Report(run.run_id, run.key.id, output, forwarded, refused, run.spend().gross_usd, rows, dedup)


def print_report(report: Report, counts: str | None = None, *, places: int = 2, steps: bool = True) -> None:
    """Print the report: `counts` says what was sent (default "<n> calls forwarded"), `places` the
    decimals of USD amounts, and `steps` whether each row shows its `X-Keybrake-Step` header."""
    print(f"run {report.run_id} (key {report.key_id})")
    print(f"  model's last word: {report.output}")
    calls = f"{report.forwarded} call{'' if report.forwarded == 1 else 's'} forwarded"
    print(f"  {counts or calls}, {len(report.refused)} refused")
    for row in report.rows:
        step = ((row.metadata or {}).get("headers") or {}).get("x-keybrake-step", "-")
        money = f"${row.cost_usd:.{places}f}" if row.upstream_status is not None else "not sent"
        where = f"{row.path} [{step}]" if steps else row.path
        print(f"   {row.method} {where} -> {row.status} {row.error_code or row.verdict} {money}")
    for (code, why), n in Counter(report.refused).items():  # each reason once
        print(f"  refused{f' x{n}' if n > 1 else ''}: {code}: {why}")
    print(f"  USD moved: ${report.spent_usd:.{places}f}")


def run_from_command_line(
    doc: str | None, main: Callable[..., Report], options: Callable[[argparse.ArgumentParser], None] | None = None
) -> Report:
    """Run a recipe's `main(url, admin_token, credential=…)` with the command line's options
    (defaults from KEYBRAKE_URL, KEYBRAKE_ADMIN_TOKEN, KEYBRAKE_CREDENTIAL) and return its report.
    `options` adds a recipe's own options to the parser: each is passed to `main` by its name.

    Exits with status 1 and a message on stderr without an admin token, or on Keybrake's refusal
    (a `KeybrakeError`, e.g. no credential of that name).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--url", default=os.environ.get("KEYBRAKE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--admin-token", default=os.environ.get("KEYBRAKE_ADMIN_TOKEN"))
    parser.add_argument(
        "--credential",
        default=os.environ.get("KEYBRAKE_CREDENTIAL") or None,
        help="the credential the run's key uses, by name (default: the vendor's only one, or 'default')",
    )
    if options is not None:
        options(parser)
    args = vars(parser.parse_args())
    url, admin_token = args.pop("url"), args.pop("admin_token")
    if not admin_token:
        sys.exit("set KEYBRAKE_ADMIN_TOKEN (or --admin-token) to a Keybrake admin token")
    try:
        report: Report = main(url, admin_token, **args)  # credential and the recipe's own options
    except KeybrakeError as exc:  # e.g. no credential of that name: Keybrake's answer says which
        sys.exit(f"Keybrake: {exc}")
    return report
