"""Retention never lets spend pass a budget cap (red team, issue 12 fix round, finding F1.1).

A budget created (or a key relabelled) after a purge is seeded from the audit rows; so a retention
shorter than a month is refused, and the rows of a key still in the store are never purged.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
DAY = 86_400_000


def _charge(kb: KeybrakeThread, key: dict[str, Any], amount: int) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=f"amount={amount}&currency=usd&source=tok_visa".encode(),
        headers={**FORM, "Authorization": f"Bearer {key['key']}"},
        timeout=60,
    )


def _purge(data_dir: Path, days: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keybrake.cli", "audit", "purge", "--older-than-days", str(days),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_a_total_budget_created_after_a_purge_starts_at_a_live_keys_spend(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """The red team's case: a live key spent $90, then `audit purge --older-than-days 1` removed its
    rows and a new $100 total budget started at $0 ($190 went through it). Now a 1-day purge is
    refused naming the option; a legal purge (35 days) after the key's $90 is 40 days old keeps a
    live key's rows, so the budget starts at $90 and only $10 more passes."""
    real = int(time.time() * 1000)
    now = [real - 40 * DAY]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0], max_key_ttl_s=90 * 86_400) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"total_usd_cap": 10_000}, label="acme:agent", expires_in="60d")
        for _ in range(9):
            assert _charge(kb, key, 1000).status_code == 200  # $90, forty days ago
        now[0] = real
        short = _purge(tmp_path / "d", 1)
        assert short.returncode != 0 and "--older-than-days must be 0" in short.stderr, short.stderr
        ok = _purge(tmp_path / "d", 35)
        assert ok.returncode == 0 and "deleted 0 audit rows" in ok.stdout, (ok.stdout, ok.stderr)
        with kb.admin() as c:
            bud = c.post("/v1/budgets", json={"name": "acme", "scope": {"label_prefix": "acme:"}, "total_usd_cap": 100})
            assert bud.status_code == 201, bud.text
            seeded = bud.json()["usage"]["total_usd"]["used"]
        assert kb.key(key["id"])["usage"]["total_usd"]["used"] == 90
        admitted = sum(_charge(kb, key, 1000).status_code == 200 for _ in range(10))
    assert seeded == 90 and admitted == 1, (seeded, admitted)
