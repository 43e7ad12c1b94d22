"""Red-team findings on the command line: `keys update` warns as `keys issue` does, `keys revoke`
never ignores a filter or takes an unknown vendor or credential as "revoked 0", table cells never
print a control or format character raw, and a `--policy` that is no JSON object is a usage error."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner, Result

from keybrake.cli import main
from keybrake.cli.common import cell, table
from tests.harness import KeybrakeThread

NO_CAP = "warning: no USD cap is set: this key can move money without limit until it expires"
NO_ENDPOINTS = "warning: no allowed_endpoints: every endpoint of the vendor is allowed"


def cli(kb: KeybrakeThread, *args: str) -> Result:
    """`keybrake <args> --data-dir <kb's data dir>`, run in-process."""
    return CliRunner().invoke(main, [*args, "--data-dir", str(kb.settings.data_dir)])


def test_keys_update_prints_the_warnings_keys_issue_prints(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5, "allowed_endpoints": ["GET /v1/balance"]})
    result = cli(kb, "keys", "update", key["id"], "--policy", '{"daily_usd_cap": null, "allowed_endpoints": null}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == [NO_CAP[9:], NO_ENDPOINTS[9:]]
    assert result.stderr.splitlines() == [NO_CAP, NO_ENDPOINTS]
    assert kb.key(key["id"])["policy"]["daily_usd_cap"] is None

    capped = cli(kb, "keys", "update", key["id"], "--daily-usd-cap", "5")
    assert capped.exit_code == 0, capped.output
    assert capped.stderr.splitlines() == [NO_ENDPOINTS]


@pytest.mark.parametrize("bulk", [["--all"], ["--vendor", "stripe"], ["--label-prefix", "x:"], ["--credential", "d"]])
def test_keys_revoke_refuses_a_key_id_with_a_bulk_filter(kb: KeybrakeThread, bulk: list[str]) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    other = kb.issue({"daily_usd_cap": 5})
    result = cli(kb, "keys", "revoke", key["id"], *bulk)
    assert result.exit_code == 2, result.output  # a usage error
    assert "KEY_ID" in result.output and bulk[0] in result.output and "not both" in result.output
    assert kb.key(key["id"])["status"] == kb.key(other["id"])["status"] == "active"  # nothing revoked


@pytest.mark.parametrize("vendor", ["strpe", "STRIPE"])
def test_keys_revoke_refuses_an_unknown_vendor_naming_the_known_ones(kb: KeybrakeThread, vendor: str) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    result = cli(kb, "keys", "revoke", "--vendor", vendor)
    assert result.exit_code == 1, result.output
    assert f"validation_error: unknown vendor {vendor!r}; known: " in result.output
    assert "stripe" in result.output and "(vendor)" in result.output and '"revoked"' not in result.output
    assert kb.key(key["id"])["status"] == "active"


def test_keys_revoke_refuses_a_credential_that_does_not_exist(kb: KeybrakeThread) -> None:
    result = cli(kb, "keys", "revoke", "--credential", "defualt")
    assert result.exit_code == 1, result.output
    assert "validation_error: no credential named 'defualt' (credential)" in result.output
    nothing = cli(kb, "keys", "revoke", "--label-prefix", "nobody:")  # a prefix matching no key: a valid 0
    assert nothing.exit_code == 0 and json.loads(nothing.stdout)["revoked"] == 0


@pytest.mark.parametrize("char", ["\u202e", "\u0007", "\u2028", "\u2029", "\u200b", "\x1b", "\n", "\ud800"])
def test_a_table_cell_escapes_control_and_format_characters(char: str) -> None:
    assert cell(f"/v1/a{char}b") == f"/v1/a\\u{ord(char):04x}b"
    assert cell([f"x{char}", "y"]) == f"x\\u{ord(char):04x},y"


def test_a_table_cell_keeps_printable_text_and_escapes_astral_format_characters() -> None:
    assert cell("/v1/customers/cus_é漢 ünï") == "/v1/customers/cus_é漢 ünï"
    assert cell("tag\U000e0041") == "tag\\udb40\\udc41"  # U+E0041 TAG LATIN CAPITAL LETTER A (Cf)
    assert cell("a\\u202eb") == "a\\u202eb"  # already-escaped text stays as it is


def test_a_table_never_prints_a_spoofing_character(capsys: pytest.CaptureFixture[str]) -> None:
    table([{"path": "/v1/charges\u202efdp.exe", "label": "a\u0007b\u2028c"}], ("path", "label"))
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "\u202e\u0007\u2028")
    assert "/v1/charges\\u202efdp.exe" in out and "a\\u0007b\\u2028c" in out


def test_audit_query_and_tail_escape_an_agent_chosen_path(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    agent = {"Authorization": f"Bearer {key['key']}"}
    path = "/stripe/v1/customers/cus_%E2%80%AEtxt.exe"  # U+202E: shows as cus_exe.txt
    httpx.get(f"{kb.url}{path}", headers=agent)
    rows = [json.loads(line) for line in cli(kb, "audit", "query", "--json").stdout.splitlines()]
    assert any("\u202e" in (r["path"] or "") for r in rows), rows  # the row holds the raw path
    for command in (("audit", "query"), ("audit", "tail")):
        result = cli(kb, *command)
        assert result.exit_code == 0, result.output
        assert "\u202e" not in result.stdout and "cus_\\u202etxt.exe" in result.stdout, result.stdout


@pytest.mark.parametrize("policy", ["[1]", '"x"', "5", "true", "null"])
def test_keys_issue_refuses_a_policy_that_is_no_object(kb: KeybrakeThread, policy: str) -> None:
    result = cli(kb, "keys", "issue", "--vendor", "stripe", "--policy", policy, "--daily-usd-cap", "5")
    assert result.exit_code == 2, result.output  # a usage error, never a traceback
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "--policy must be a JSON object" in result.output


@pytest.mark.parametrize("policy", ["[1]", '"x"', "5"])
def test_keys_update_refuses_a_policy_that_is_no_object(kb: KeybrakeThread, policy: str) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    result = cli(kb, "keys", "update", key["id"], "--policy", policy, "--daily-usd-cap", "5")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "--policy must be a JSON object" in result.output


def test_keys_update_policy_null_is_the_merge_patch_removing_the_policy(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5, "max_requests_per_hour": 9})
    with_cap = cli(kb, "keys", "update", key["id"], "--policy", "null", "--daily-usd-cap", "5")
    assert with_cap.exit_code == 2 and "--policy null" in with_cap.output, with_cap.output
    result = cli(kb, "keys", "update", key["id"], "--policy", "null")
    assert result.exit_code == 0, result.output
    policy = kb.key(key["id"])["policy"]
    assert policy["daily_usd_cap"] is None and policy["max_requests_per_hour"] is None


def test_a_policy_file_that_cannot_be_read_is_an_error_naming_it(kb: KeybrakeThread) -> None:
    result = cli(kb, "keys", "issue", "--vendor", "stripe", "--policy", "@/nonexistent/policy.json")
    assert result.exit_code == 1 and "--policy @/nonexistent/policy.json" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_json_output_is_utf8_and_still_escapes_spoofing_characters(kb: KeybrakeThread) -> None:
    added = cli(kb, "credentials", "add", "--vendor", "stripe", "--name", "utf8", "--secret", "sk_test_0123456789")
    assert added.exit_code == 0, added.output
    assert '"secret_hint": "sk_test_…6789"' in added.stdout and "\\u2026" not in added.stdout
    assert json.loads(added.stdout)["secret_hint"] == "sk_test_…6789"
    key = kb.issue({"daily_usd_cap": 5})
    httpx.get(f"{kb.url}/stripe/v1/customers/cus_é%E2%80%AE", headers={"Authorization": f"Bearer {key['key']}"})
    out = cli(kb, "audit", "query", "--json").stdout
    assert "cus_é\\u202e" in out and "\u202e" not in out, out
