"""`keybrake demo` as a real subprocess: where the cap stops each scenario, the audit trail, the
money with and without Keybrake, the options, and that nothing is left behind (temporary data,
processes, ports) — also after Ctrl-C — nor anything of the user's touched."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.demo.sandbox_resend import EMAIL_USD
from keybrake.demo.sandbox_twilio import US_SMS_SEGMENT_USD
from keybrake.demo.scenarios import EMAIL_CC, EMAIL_LOOP, REFUND_MINOR
from keybrake.vendors.rates import DEFAULT_TWILIO_RATES

pytestmark = [pytest.mark.multiprocess, pytest.mark.sqlite_only]

REFUND_USD = Decimal(REFUND_MINOR) / 100
# What Keybrake reserves for one single-segment SMS to the US: its default rate, rounded up to a micro-dollar.
SMS_RESERVED_USD = Decimal(math.ceil(DEFAULT_TWILIO_RATES.rate("sms", "US") * 1_000_000)) / 1_000_000


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    # TMPDIR: the demo's temporary data directory is made there, so the test sees whether it is gone.
    return {**os.environ, "TMPDIR": str(tmp), **extra}


def _demo(tmp: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp / "t").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "keybrake.cli", "demo", *args],
        env=_env(tmp / "t", **env),
        cwd=cwd or tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout, parse_float=Decimal)
    return doc


def _check_run(
    doc: dict[str, Any], attempts: int, through: int, code_after: str = "key_revoked", cap: str = "spend_cap_exceeded"
) -> None:
    """The calls, their audit rows and the cap's stopping point, for `through` calls let through."""
    statuses = [c["status"] for c in doc["calls"]]
    assert len(statuses) == attempts
    assert all(200 <= s < 300 for s in statuses[:through]), statuses
    assert [(c["status"], c["code"]) for c in doc["calls"][through:]] == [(429, cap)] * (attempts - through)
    assert doc["stopped_at"] == (through + 1 if through < attempts else None)
    assert (doc["after_revoke"]["status"], doc["after_revoke"]["code"]) == (401, code_after)
    rows = {r["id"]: r for r in doc["audit"]}
    assert len(rows) == attempts + 1
    for call in [*doc["calls"], doc["after_revoke"]]:
        row = rows[call["audit_id"]]
        assert row["status"] == call["status"]
        assert row["agent_run_id"] == doc["run_id"] and row["key_id"] == doc["key_id"]
        want = (
            "allowed" if call["status"] < 300 else ("cap_exceeded" if call["status"] == 429 else "denied_key_revoked")
        )
        assert row["verdict"] == want
    assert doc["ok"] is True and doc["problems"] == []


def test_refund_loop_stops_at_the_cap_and_prints_the_trail(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    through = int(Decimal(100) // REFUND_USD)  # the default cap, $100, over $25.00 refunds: 4
    assert f"stopped by the cap at attempt {through + 1}:" in out
    assert re.search(rf"attempt +{through}/20 +200 through", out)
    assert "total spend cap of $100.00" in out
    assert "Audit trail of run-demo-" in out and ": 21 rows" in out
    assert len(re.findall(r"^  \d+ +\S+ +allowed +200 ", out, re.M)) == through
    assert len(re.findall(r"^  \d+ +\S+ +cap_exceeded +429 +spend_cap_exceeded", out, re.M)) == 20 - through
    assert re.search(r"^  21 +\S+ +denied_key_revoked +401 +key_revoked", out, re.M)
    assert f"20 accepted, ${20 * REFUND_USD:,.2f} moved" in out
    assert f"{through} went through, ${through * REFUND_USD:,.2f} moved; {20 - through} refused" in out
    assert f"Kept from moving: ${(20 - through) * REFUND_USD:,.2f}." in out
    assert "OK: the cap stopped the loop at attempt 5" in out
    assert list((tmp_path / "t").iterdir()) == []  # the temporary data directory is gone


def test_refund_loop_json_with_another_cap(tmp_path: Path) -> None:
    doc = _json(_demo(tmp_path, "--json", "--attempts", "7", "--cap", "60"))
    through = int(Decimal(60) // REFUND_USD)  # 2 refunds of $25.00 fit in $60; the third would not
    _check_run(doc, 7, through)
    allowed = [r for r in doc["audit"] if r["verdict"] == "allowed"]
    assert [(r["cost_usd"], r["cost_source"], r["cost_kind"]) for r in allowed] == [
        (REFUND_USD, "response", "refund")
    ] * through
    assert doc["with_keybrake_usd"] == through * REFUND_USD
    assert doc["without_keybrake_usd"] == 7 * REFUND_USD
    assert doc["kept_from_moving_usd"] == (7 - through) * REFUND_USD
    assert doc["data_dir"] is None and list((tmp_path / "t").iterdir()) == []


def test_sms_loop_settles_at_twilios_price(tmp_path: Path) -> None:
    doc = _json(_demo(tmp_path, "--scenario", "sms-loop", "--json"))
    through = int(Decimal("0.10") // SMS_RESERVED_USD)  # the default cap, $0.10
    _check_run(doc, 20, through)
    allowed = [r for r in doc["audit"] if r["verdict"] == "allowed"]
    # Reserved at Keybrake's rate, then settled at the price Twilio gives once the message is sent.
    assert {(r["reserved_usd"], r["cost_usd"], r["cost_source"]) for r in allowed} == {
        (SMS_RESERVED_USD, US_SMS_SEGMENT_USD, "response")
    }
    # Each row settled by reconciliation reports the cap used after its own settlement (not the
    # $0 used while every estimate was still reserved).
    assert {r["settled_by"] for r in allowed} == {"reconciliation"}
    assert sorted(r["cap_usage_after_usd"] for r in allowed) == [k * US_SMS_SEGMENT_USD for k in range(1, through + 1)]
    assert doc["with_keybrake_usd"] == through * US_SMS_SEGMENT_USD
    assert doc["without_keybrake_usd"] == 20 * US_SMS_SEGMENT_USD
    assert list((tmp_path / "t").iterdir()) == []


RECIPIENTS = 1 + len(EMAIL_CC)  # each email of email-loop goes to its `to` and its `cc`s


def _usd(amount: Decimal) -> str:
    """An amount below a dollar as the demo prints it: at least 4 decimals (`$0.0012`, `$0.0240`)."""
    places = max(4, -int(amount.normalize().as_tuple().exponent))
    return f"${amount:.{places}f}"


def test_email_loop_stops_at_the_send_cap(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--scenario", "email-loop")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert EMAIL_LOOP.send_cap is not None
    through = EMAIL_LOOP.send_cap // RECIPIENTS  # 20 recipients a day, 3 an email: 6 emails
    assert (
        f"stopped by the cap at attempt {through + 1}: Do not retry: this call would exceed the daily send cap" in out
    )
    assert "daily_send_cap 20 emails" in out and ": 21 rows" in out
    per_email = re.escape(_usd(RECIPIENTS * EMAIL_USD))
    assert len(re.findall(rf"^  \d+ +\S+ +allowed +200 +{per_email} +flat_rate", out, re.M)) == through
    assert len(re.findall(r"^  \d+ +\S+ +cap_exceeded +429 +send_cap_exceeded", out, re.M)) == 20 - through
    assert f"20 accepted, {20 * RECIPIENTS} emails sent, {_usd(20 * RECIPIENTS * EMAIL_USD)} moved" in out
    assert (
        f"{through} went through, {through * RECIPIENTS} emails sent, {_usd(through * RECIPIENTS * EMAIL_USD)}" in out
    )
    assert f"OK: the cap stopped the loop at attempt {through + 1}" in out
    assert list((tmp_path / "t").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "code"),
    [(("--cap", "0.005"), "spend_cap_exceeded"), (("--send-cap", "10", "--attempts", "5"), "send_cap_exceeded")],
    ids=["usd-cap", "send-cap"],
)
def test_email_loop_json_stops_at_whichever_cap_comes_first(tmp_path: Path, args: tuple[str, ...], code: str) -> None:
    doc = _json(_demo(tmp_path, "--scenario", "email-loop", "--json", *args))
    per_email = RECIPIENTS * EMAIL_USD
    cap, send_cap = Decimal(doc["cap_usd"]), doc["send_cap"]
    through = min(doc["attempts"], int(cap // per_email), send_cap // RECIPIENTS)
    _check_run(doc, doc["attempts"], through, cap=code)
    allowed = [r for r in doc["audit"] if r["verdict"] == "allowed"]
    assert [(r["cost_usd"], r["cost_source"], r["request_summary"]["recipient_count"]) for r in allowed] == [
        (per_email, "flat_rate", RECIPIENTS)
    ] * through
    assert len({r["vendor_object_id"] for r in allowed}) == through
    assert (doc["with_keybrake_sent"], doc["without_keybrake_sent"]) == (
        through * RECIPIENTS,
        doc["attempts"] * RECIPIENTS,
    )
    assert doc["with_keybrake_usd"] == through * per_email
    assert doc["without_keybrake_usd"] == doc["attempts"] * per_email


def test_sms_loop_with_a_send_cap_counts_messages(tmp_path: Path) -> None:
    """Twilio's daily_send_cap counts one send per message created, whatever its segments."""
    doc = _json(_demo(tmp_path, "--scenario", "sms-loop", "--json", "--send-cap", "5", "--attempts", "8"))
    through = min(8, 5, int(Decimal("0.10") // SMS_RESERVED_USD))
    _check_run(doc, 8, through, cap="send_cap_exceeded")
    assert (doc["with_keybrake_sent"], doc["without_keybrake_sent"]) == (through, 8)


def test_a_cap_below_one_call_lets_nothing_through(tmp_path: Path) -> None:
    doc = _json(_demo(tmp_path, "--json", "--attempts", "3", "--cap", "10"))
    _check_run(doc, 3, 0)
    assert doc["stopped_at"] == 1 and doc["with_keybrake_usd"] == 0


def test_keep_leaves_the_data_directory_and_says_where(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--attempts", "5", "--keep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"Data directory kept: (\S+)", proc.stdout)
    assert m, proc.stdout
    kept = Path(m.group(1))
    assert kept.parent == tmp_path / "t"
    assert (kept / "keybrake" / "keybrake.db").is_file() and (kept / "serve.log").is_file()
    assert "vault_key_" not in (kept / "serve.log").read_text()


def test_leaves_the_users_data_settings_and_ports_alone(tmp_path: Path) -> None:
    """A user's keybrake-data/, KEYBRAKE_* settings and a server on 8080 are not the demo's."""
    user = tmp_path / "project"
    (user / "keybrake-data").mkdir(parents=True)
    (user / "keybrake-data" / "keep-me").write_text("x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _demo(
            tmp_path, "--attempts", "5", cwd=user, KEYBRAKE_DATA_DIR=str(user / "keybrake-data"),
            KEYBRAKE_PORT=str(port), KEYBRAKE_MASTER_KEY="not-a-key", KEYBRAKE_DATABASE_URL="postgresql://nowhere/x",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p.name for p in (user / "keybrake-data").iterdir()] == ["keep-me"]
    assert f":{port}," not in proc.stdout


def test_bad_options_are_named() -> None:
    runner = CliRunner()
    for args, named in (
        (["--cap", "-3"], "above 0"),
        (["--cap", "ten"], "not an amount in USD"),
        (["--cap", "0.0000001"], "at most 6 decimals"),
        (["--scenario", "wire-loop"], "--scenario"),
        (["--attempts", "0"], "--attempts"),
        (["--attempts", "101"], "--attempts"),
        (["--send-cap", "5"], "--send-cap"),  # refund-loop: Stripe has no daily_send_cap
        (["--scenario", "email-loop", "--send-cap", "-1"], "--send-cap"),
    ):
        result = runner.invoke(main, ["demo", *args])
        assert result.exit_code == 2, (args, result.output)
        assert named in result.output, (args, result.output)


def _processes_naming(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def _refused(address: str) -> bool:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


# SIGHUP: the terminal the demo runs in is closed (an ssh session dropped at 2 a.m.).
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_an_interrupt_mid_loop_cleans_up(tmp_path: Path, sig: signal.Signals) -> None:
    tmp = tmp_path / "t"
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "keybrake.cli", "demo", "--pace", "1"],
        env=_env(tmp), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if "attempt  1/20" in line or not line:
            break
    text = "".join(seen)
    assert "attempt  1/20" in text, text
    data_dir = re.search(r"data in (\S+)", text)
    addresses = re.findall(r"listening on (http://[0-9.]+:[0-9]+)", text)
    assert data_dir and len(addresses) == 2, text
    assert _processes_naming(data_dir.group(1)), "keybrake serve runs on the demo's data directory"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert "interrupted" in err
    assert list(tmp.iterdir()) == []
    assert _processes_naming(data_dir.group(1)) == []
    assert all(_refused(a) for a in addresses)


def test_a_loop_within_the_cap_goes_through(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--attempts", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: 3 calls stayed within the $100.00 cap" in proc.stdout
    assert f"3 went through, ${3 * REFUND_USD:,.2f} moved; 0 refused" in proc.stdout
