"""The CLI mirrors the admin API's resources: alerts, `keys update`, `credentials show`, `audit show`,
each through the admin layer the routes use, printing what the API answers and refusing a bad input
with the API's message naming the field; plus the CLI's own output rules (tables, times, --version)."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import httpx
from click.testing import CliRunner, Result

from keybrake.cli import main
from tests.harness import KeybrakeThread, wait_for

PUBLIC_HOOK = "https://93.184.216.34/hooks/secret-path"  # an IP address: checked without DNS


def cli(kb: KeybrakeThread, *args: str) -> Result:
    """`keybrake <args> --data-dir <kb's data dir>`, run in-process."""
    return CliRunner().invoke(main, [*args, "--data-dir", str(kb.settings.data_dir)])


def ok_json(result: Result) -> Any:
    """The JSON a command that succeeded printed."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_alerts_create_list_deliveries_delete(kb: KeybrakeThread) -> None:
    made = ok_json(cli(kb, "alerts", "create", "--type", "webhook", "--url", PUBLIC_HOOK, "--event", "key.revoked"))
    assert made["id"].startswith("alr_") and made["secret"].startswith("whsec_kb_")
    assert made["events"] == ["key.revoked"] and made["url"] == "https://93.184.216.34/…"
    with kb.admin() as c:
        listed = c.get("/v1/alerts").json()["data"]
    assert [a["id"] for a in listed] == [made["id"]]
    table = cli(kb, "alerts", "list")
    assert table.exit_code == 0 and made["id"] in table.output and "key.revoked" in table.output
    assert "secret-path" not in table.output  # the URL's path is a secret

    key = kb.issue({"daily_usd_cap": 5})
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
    rows = wait_for(lambda: ok_json(cli(kb, "alerts", "deliveries", "--json")))
    assert rows[0]["alert_id"] == made["id"] and rows[0]["type"] == "key.revoked"
    with kb.admin() as c:
        api_rows = c.get("/v1/alerts/deliveries").json()["data"]
    assert [r["id"] for r in rows] == [r["id"] for r in api_rows]
    assert ok_json(cli(kb, "alerts", "deliveries", "--json", "--state", "delivered")) == [
        r for r in rows if r["state"] == "delivered"
    ]
    bad_limit = cli(kb, "alerts", "deliveries", "--limit", "0")
    assert bad_limit.exit_code != 0 and "(limit)" in bad_limit.output

    gone = ok_json(cli(kb, "alerts", "delete", made["id"]))
    assert gone["deleted"] is True and gone["id"] == made["id"]
    again = cli(kb, "alerts", "delete", made["id"])
    assert again.exit_code != 0 and "not_found" in again.output


def test_alerts_create_refuses_with_the_apis_message(kb: KeybrakeThread) -> None:
    unknown = cli(kb, "alerts", "create", "--type", "webhook", "--url", PUBLIC_HOOK, "--event", "key.eaten")
    assert unknown.exit_code != 0
    assert "validation_error" in unknown.output and "'key.eaten' is not an event" in unknown.output
    assert "(events" in unknown.output
    insecure = cli(
        kb, "alerts", "create", "--type", "webhook", "--url", "http://93.184.216.34/x", "--event", "key.revoked"
    )
    assert insecure.exit_code != 0 and "validation_error" in insecure.output and "(url)" in insecure.output
    pct = cli(kb, "alerts", "create", "--type", "slack", "--url", PUBLIC_HOOK, "--event", "cap.threshold",
              "--threshold", "150")  # fmt: skip
    assert pct.exit_code != 0 and "thresholds are percentages" in pct.output and "(thresholds" in pct.output


def test_keys_update_is_the_merge_patch(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5, "total_usd_cap": 50}, metadata={"team": "a", "run": "1"})
    out = ok_json(
        cli(kb, "keys", "update", key["id"], "--label", "renamed", "--daily-usd-cap", "7",
            "--policy", json.dumps({"total_usd_cap": None}), "--metadata", "team=b", "--remove-metadata", "run")
    )  # fmt: skip
    assert out.pop("warnings") == ["no allowed_endpoints: every endpoint of the vendor is allowed"]  # as issue
    assert out == kb.key(key["id"])
    assert out["label"] == "renamed" and out["metadata"] == {"team": "b"}
    assert out["policy"]["daily_usd_cap"] == 7 and out["policy"]["total_usd_cap"] is None

    later = ok_json(cli(kb, "keys", "update", key["id"], "--clear-label", "--expires-in", "2h"))
    assert later["label"] is None and later["expires_at"] != out["expires_at"] and later["policy"] == out["policy"]

    bad = cli(kb, "keys", "update", key["id"], "--policy", json.dumps({"account_allowlist": "acct_1"}))
    assert bad.exit_code != 0 and "validation_error" in bad.output and "account_allowlist" in bad.output
    past = cli(kb, "keys", "update", key["id"], "--expires-at", "2001-01-01T00:00:00Z")
    assert past.exit_code != 0 and "the expiry is in the past (expires_at)" in past.output
    nothing = cli(kb, "keys", "update", key["id"])
    assert nothing.exit_code != 0 and "--label" in nothing.output
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
    revoked = cli(kb, "keys", "update", key["id"], "--label", "x")
    assert revoked.exit_code != 0 and "conflict" in revoked.output and "revoked" in revoked.output


def test_credentials_show_and_list_print_what_the_api_prints(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        api = c.get("/v1/credentials/default").json()
    assert ok_json(cli(kb, "credentials", "show", "default")) == api
    missing = cli(kb, "credentials", "show", "nope")
    assert missing.exit_code != 0 and "not_found" in missing.output
    with kb.admin() as c:
        c.post("/v1/credentials", json={"vendor": "resend", "name": "mail", "secret": "re_" + "a" * 32})
    listed = cli(kb, "credentials", "list")
    assert listed.exit_code == 0, listed.output
    mail = next(line for line in listed.output.splitlines() if line.startswith("mail "))
    assert "None" not in listed.output and " null " in mail  # base_url null, as the API's JSON


def test_audit_show_is_one_row_as_the_api(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    r = httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
    row_id = r.headers["x-keybrake-request-id"]
    with kb.admin() as c:
        api = c.get(f"/v1/audit/{row_id}").json()
    assert ok_json(cli(kb, "audit", "show", row_id)) == api
    missing = cli(kb, "audit", "show", "kbr_nope")
    assert missing.exit_code != 0 and "not_found" in missing.output and "kbr_nope" in missing.output


def test_revoke_without_a_filter_names_the_cli_options(kb: KeybrakeThread) -> None:
    result = cli(kb, "keys", "revoke")
    assert result.exit_code != 0
    for option in ("--label-prefix", "--vendor", "--credential", "--all"):
        assert option in result.output
    assert "all=true" not in result.output


def test_admin_tokens_list_prints_rfc3339_times(kb: KeybrakeThread) -> None:
    made = ok_json(cli(kb, "admin-tokens", "create", "--label", "ops"))
    assert cli(kb, "admin-tokens", "revoke", made["id"]).exit_code == 0
    listed = cli(kb, "admin-tokens", "list", "--iso")
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if line.startswith(made["id"]))
    cells = line.split()
    assert cells[3].endswith("Z") and cells[3][4] == "-" and "T" in cells[3]  # created_at
    assert cells[4].endswith("Z") and "T" in cells[4]  # revoked_at
    people = cli(kb, "admin-tokens", "list")  # without --iso: times for people
    line = next(line for line in people.output.splitlines() if line.startswith(made["id"]))
    assert line.count(" UTC (just now)") == 2, line


def test_version_is_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"keybrake, version {version('keybrake')}"


def test_keys_list_and_audit_query_take_the_apis_filters(kb: KeybrakeThread) -> None:
    a = kb.issue({"daily_usd_cap": 5}, label="tenant-a", metadata={"team": "a"})
    b = kb.issue({"daily_usd_cap": 5}, label="tenant-b", metadata={"team": "b"})
    by_meta = cli(kb, "keys", "list", "--metadata", "team=b")
    assert by_meta.exit_code == 0 and b["id"] in by_meta.output and a["id"] not in by_meta.output
    by_label = cli(kb, "keys", "list", "--label", "tenant-a", "--credential", "default")
    assert by_label.exit_code == 0 and a["id"] in by_label.output and b["id"] not in by_label.output
    assert b["id"] not in cli(kb, "keys", "list", "--credential", "other").output

    for key in (a, b):
        httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key['key']}"})
    rows = [
        json.loads(line) for line in cli(kb, "audit", "query", "--json", "--metadata", "team=a").stdout.splitlines()
    ]
    assert [r["key_id"] for r in rows] == [a["id"]]
    assert cli(kb, "audit", "query", "--json", "--vendor", "twilio").stdout == ""
    assert len(cli(kb, "audit", "query", "--json", "--vendor", "stripe").stdout.splitlines()) == 2


# Every admin API operation an operator uses, and the command that mirrors it (docs/cli.md).
MIRROR = {
    "POST /v1/keys": "keys issue",
    "GET /v1/keys": "keys list",
    "GET /v1/keys/{key_id}": "keys show",
    "PATCH /v1/keys/{key_id}": "keys update",
    "DELETE /v1/keys/{key_id}": "keys revoke",
    "POST /v1/keys/revoke": "keys revoke",
    "POST /v1/credentials": "credentials add",
    "GET /v1/credentials": "credentials list",
    "GET /v1/credentials/{name}": "credentials show",
    "POST /v1/credentials/{name}/rotate": "credentials rotate",
    "DELETE /v1/credentials/{name}": "credentials delete",
    "POST /v1/budgets": "budgets create",
    "GET /v1/budgets": "budgets list",
    "GET /v1/budgets/{budget_id}": "budgets show",
    "PATCH /v1/budgets/{budget_id}": "budgets update",
    "DELETE /v1/budgets/{budget_id}": "budgets delete",
    "POST /v1/alerts": "alerts create",
    "GET /v1/alerts": "alerts list",
    "GET /v1/alerts/deliveries": "alerts deliveries",
    "DELETE /v1/alerts/{alert_id}": "alerts delete",
    "GET /v1/approvals": "approvals list",
    "GET /v1/approvals/{approval_id}": "approvals get",
    "POST /v1/approvals/{approval_id}/approve": "approvals approve",
    "POST /v1/approvals/{approval_id}/deny": "approvals deny",
    "GET /v1/audit": "audit query",
    "GET /v1/audit/export": "audit export",
    "GET /v1/audit/{row_id}": "audit show",
    "GET /v1/spend": "spend",
}


def test_every_admin_operation_has_a_command(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        spec = c.get("/openapi.json").json()
    operations = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if "health" not in op.get("tags", [])  # /healthz, /readyz, /metrics: HTTP endpoints only
    }
    assert operations == set(MIRROR)
    for command in set(MIRROR.values()):
        result = CliRunner().invoke(main, [*command.split(), "--help"])
        assert result.exit_code == 0 and "Usage: main" in result.output, command
