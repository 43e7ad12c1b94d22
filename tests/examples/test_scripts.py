"""Each recipe runs as a script (`python examples/<recipe>.py`) against a running Keybrake."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from tests.examples.conftest import ROOT
from tests.harness import ADMIN_TOKEN, KeybrakeThread

# recipe: (calls forwarded, USD moved)
RECIPES = {"pydantic_ai_stripe": (4, "40.00"), "openai_agents_stripe": (3, "90.00"), "langchain_stripe": (2, "50.00")}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRAKE_")}
    return {**env, **extra}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_the_recipe_runs_as_a_script(kb: KeybrakeThread, name: str) -> None:
    env = _env(KEYBRAKE_URL=kb.url, KEYBRAKE_ADMIN_TOKEN=ADMIN_TOKEN)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py")], env=env, capture_output=True, text=True, timeout=90
    )
    assert out.returncode == 0, out.stderr
    forwarded, usd = RECIPES[name]
    assert f"{forwarded} calls forwarded, 1 refused" in out.stdout
    assert "  refused: spend_cap_exceeded: Do not retry" in out.stdout
    assert f"USD moved: ${usd}" in out.stdout
    assert "vault_key_" not in out.stdout + out.stderr


def test_the_twilio_recipe_runs_as_a_script(kbt: KeybrakeThread) -> None:
    env = _env(KEYBRAKE_URL=kbt.url, KEYBRAKE_ADMIN_TOKEN=ADMIN_TOKEN)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pydantic_ai_twilio.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    assert "3 texts sent, 3 repeats not sent, 1 refused" in out.stdout
    assert "  refused: send_cap_exceeded: Do not retry" in out.stdout
    assert "vault_key_" not in out.stdout + out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("   ")]
    assert len(rows) == 7 and all(r[0] == "POST" and r[1].startswith("/2010-04-01/Accounts/") for r in rows), rows
    assert [r[-1] for r in rows].count("sent") == 4  # 3 repeats answered by Keybrake and 1 refused: not sent
    moved = re.search(r"^  USD moved: \$(\d+\.\d{4})$", out.stdout, re.M)
    assert moved is not None and Decimal(moved[1]) > 0, out.stdout


# the operator the script plays: (its options, counts, each approval's line and how many, USD moved)
APPROVAL_RUNS = {
    "approve": ([], "2 calls forwarded, 0 refused", r"approved by adm_\w+ \(checked the order\)", 1, "280.00"),
    "deny": (["--decide", "deny", "--reason", "not today"], "1 call forwarded, 1 refused",
             r"denied by adm_\w+ \(not today\)", 1, "30.00"),
    "none": (["--decide", "none", "--approval-timeout-seconds", "1"], "1 call forwarded, 2 refused",
             r"expired by keybrake \(no one decided in time\)", 2, "30.00"),
}  # fmt: skip


@pytest.mark.parametrize("decision", sorted(APPROVAL_RUNS))
def test_the_approval_recipe_runs_as_a_script_and_plays_the_operator(kb: KeybrakeThread, decision: str) -> None:
    argv, counts, state, held, usd = APPROVAL_RUNS[decision]
    env = _env(KEYBRAKE_URL=kb.url, KEYBRAKE_ADMIN_TOKEN=ADMIN_TOKEN)
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pydantic_ai_approval.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    assert counts in out.stdout
    assert f"USD moved: ${usd}" in out.stdout
    # each held refund's approval, as its audit row tells it: state, who decided, why, how long it waited
    assert len(re.findall(rf"^  approval apr_\w+: {state}, waited \d+ ms$", out.stdout, re.M)) == held, out.stdout
    assert len(re.findall(r"^  approval ", out.stdout, re.M)) == held
    assert "vault_key_" not in out.stdout + out.stderr


def test_a_recipe_uses_the_credential_named_by_option_or_environment(kb: KeybrakeThread, fake_stripe: Any) -> None:
    kb.add_credential(fake_stripe.base_url, name="ops")  # two Stripe credentials: the recipe picks one
    script = str(ROOT / "examples" / "langchain_stripe.py")
    by_env = _env(KEYBRAKE_URL=kb.url, KEYBRAKE_ADMIN_TOKEN=ADMIN_TOKEN, KEYBRAKE_CREDENTIAL="ops")
    for argv, env in (([], by_env), (["--credential", "default"], by_env)):  # the option wins
        out = subprocess.run([sys.executable, script, *argv], env=env, capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr
        key_id = re.search(r"\(key (vk_\w+)\)", out.stdout)
        assert key_id is not None, out.stdout
        assert kb.key(key_id[1])["credential"] == (argv[1] if argv else "ops")
    env = _env(KEYBRAKE_URL=kb.url, KEYBRAKE_ADMIN_TOKEN=ADMIN_TOKEN)
    out = subprocess.run([sys.executable, script, "--credential", "nope"], env=env, capture_output=True, text=True,
                         timeout=90)  # fmt: skip
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("Keybrake: ") and "'nope'" in out.stderr, out.stderr


def test_a_script_without_an_admin_token_says_what_to_set() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "langchain_stripe.py")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 1
    assert "set KEYBRAKE_ADMIN_TOKEN" in out.stderr
