"""Loading vendor definition files (docs/vendors.md, vendors defined by a file): all or nothing,
names and policy fields checked against every other vendor, KEYBRAKE_VENDORS_DIR, the price
settings a file declares, `keybrake vendors check|list`, and `keybrake serve` refusing to start
on an invalid file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.config import Settings, SettingsError, from_env, with_configured_vendors
from keybrake.vendors import build_vendors, registry
from keybrake.vendors.configured import load
from keybrake.vendors.configured.schema import DefinitionError
from tests.harness import KeybrakeThread, free_port
from tests.vendors.configured_smsco import smsco_toml, write_smsco

pytestmark = pytest.mark.store_free  # but one test runs a server: it runs on the first pass only


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    umask = os.umask(0o022)  # the files these tests write are the owner's only, as Keybrake requires
    try:
        yield
    finally:
        os.umask(umask)
        load.uninstall()


def other(name: str = "other", scope: str = "") -> str:
    return (
        f'format = 1\nname = "{name}"\nbase_url = "https://api.other.example"\nupstream_hosts = ["api.other.example"]\n'
        '[credential]\ninject = "bearer"\n[error]\nbody = { error = "{code}: {message}" }\n' + scope
    )


def test_a_directory_is_loaded_all_or_nothing(tmp_path: Path) -> None:
    write_smsco(tmp_path)
    (tmp_path / "other.toml").write_text(other())
    assert set(load.install(tmp_path, explicit=True)) == {"smsco", "other"}
    assert {"smsco", "other"} <= set(build_vendors())
    (tmp_path / "zbad.toml").write_text(other("zbad").replace('inject = "bearer"', 'inject = "cookie"'))
    (tmp_path / "new.toml").write_text(other("new"))
    with pytest.raises(DefinitionError, match=r"zbad.toml: credential.inject: must be one of"):
        load.install(tmp_path, explicit=True)
    assert registry.spec("new") is None  # nothing of the failed load was registered
    assert {"smsco", "other"} <= set(build_vendors())  # the previous load stands
    (tmp_path / "zbad.toml").unlink()
    (tmp_path / "other.toml").unlink()
    assert set(load.install(tmp_path, explicit=True)) == {"smsco", "new"}
    assert registry.spec("other") is None  # a removed file's vendor is gone after the next load


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"stripe.toml": other("stripe")}, "stripe.toml: name: 'stripe' is already a built-in vendor"),
        ({"a.toml": other("b")}, "a.toml: name: 'b' must equal the file name (a.toml)"),
        ({"notes.txt": "hello"}, "notes.txt: is not a vendor definition"),
        (
            {
                "other.toml": other(
                    scope='[[scope]]\nfield = "allowed_to_prefixes"\nmatch = "e164_prefix"\npaths = ["to"]\n'
                )
            },
            "scope[0].field: 'allowed_to_prefixes' is a policy field of vendor 'twilio' with another meaning",
        ),
        (
            {"other.toml": other(scope='[[scope]]\nfield = "allowed_to_domains"\nmatch = "exact"\npaths = ["to"]\n')},
            "scope[0].field: 'allowed_to_domains' is a policy field of vendor 'resend' with another meaning",
        ),
    ],
)
def test_clashes_and_stray_files_are_refused(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DefinitionError) as exc:
        load.install(tmp_path, explicit=True)
    assert message in str(exc.value)


def test_a_definition_others_may_write_is_refused(tmp_path: Path) -> None:
    path = write_smsco(tmp_path / "vendors")
    path.chmod(0o664)
    with pytest.raises(DefinitionError, match=r"smsco.toml: is writable by group or others \(chmod go-w\)"):
        load.install(tmp_path / "vendors", explicit=True)
    path.chmod(0o644)
    (tmp_path / "vendors").chmod(0o777)
    with pytest.raises(DefinitionError, match=r"vendors: is writable by group or others"):
        load.install(tmp_path / "vendors", explicit=True)
    (tmp_path / "vendors").chmod(0o755)
    assert set(load.install(tmp_path / "vendors", explicit=True)) == {"smsco"}


def test_an_email_domain_field_shares_resends_name(tmp_path: Path) -> None:
    from keybrake.admin.key_models import key_models

    scope = '[[scope]]\nfield = "allowed_to_domains"\nmatch = "email_domain"\npaths = ["to"]\n'
    (tmp_path / "other.toml").write_text(other(scope=scope))
    load.install(tmp_path, explicit=True)
    key_in = key_models().key_in
    for vendor in ("resend", "other"):
        body = {"vendor": vendor, "policy": {"allowed_to_domains": ["Example.COM"]}}
        assert key_in.model_validate(body).policy.to_store()["allowed_to_domains"] == ["example.com"]
    with pytest.raises(ValueError, match="is not a domain name"):
        key_in.model_validate({"vendor": "other", "policy": {"allowed_to_domains": ["*"]}})


def test_settings_name_the_directory_and_read_the_files_prices(tmp_path: Path) -> None:
    write_smsco(tmp_path / "vendors")
    s = with_configured_vendors(Settings(data_dir=tmp_path), {"KEYBRAKE_SMSCO_USD_PER_SMS": "0.02"})
    assert s.vendor_definitions == tmp_path / "vendors"
    assert s.vendor_setting("smsco", "keybrake_smsco_usd_per_sms") == Decimal("0.02")
    assert build_vendors(s)["smsco"].prices == {"KEYBRAKE_SMSCO_USD_PER_SMS": 20_000}  # type: ignore[attr-defined]
    with pytest.raises(SettingsError, match="KEYBRAKE_SMSCO_USD_PER_SMS must be a non-negative decimal"):
        with_configured_vendors(Settings(data_dir=tmp_path), {"KEYBRAKE_SMSCO_USD_PER_SMS": "-1"})
    explicit = from_env({"KEYBRAKE_VENDORS_DIR": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="missing: KEYBRAKE_VENDORS_DIR is not a directory"):
        with_configured_vendors(explicit, {})
    assert with_configured_vendors(Settings(data_dir=tmp_path / "fresh"), {}).vendor_settings == {}  # none yet


def _cli(*args: str, env: dict[str, Any] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def test_vendors_check_and_list(tmp_path: Path) -> None:
    path = write_smsco(tmp_path / "vendors")
    ok = _cli("vendors", "check", str(path))
    assert ok.exit_code == 0 and "vendor 'smsco' (SMSCo) is valid: 4 endpoints, 2 scope fields" in ok.output
    bad = tmp_path / "bad" / "smsco.toml"
    bad.parent.mkdir()
    bad.write_text(smsco_toml().replace('usd = "0.005"', 'usd = "0.0050001"'))
    refused = _cli("vendors", "check", str(bad))
    assert refused.exit_code == 1
    assert f"vendor definition {bad}: endpoint[1].usd: '0.0050001' has more than 6 decimals" in refused.output
    loose = tmp_path / "loose" / "smsco.toml"
    loose.parent.mkdir()
    loose.write_text(smsco_toml())
    loose.chmod(0o664)  # what start-up refuses, `check` refuses too
    refused = _cli("vendors", "check", str(loose))
    assert refused.exit_code == 1 and "is writable by group or others" in refused.output
    listed = _cli("vendors", "list", "--json", "--data-dir", str(tmp_path))
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["smsco"]["source"] == str(path) and rows["stripe"]["source"] == "built-in"
    assert (rows["smsco"]["title"], rows["stripe"]["title"]) == ("SMSCo", "stripe")
    assert rows["smsco"]["settings"] == [
        {"env": "KEYBRAKE_SMSCO_USD_PER_SMS", "kind": "decimal", "default": 0.0079, "value": None}
    ]
    guarded = _cli("vendors", "guarded", "--data-dir", str(tmp_path))
    assert guarded.exit_code == 0 and "smsco\t* /v1/keys/**" in guarded.output.splitlines()
    broken = _cli("vendors", "list", "--data-dir", str(tmp_path), env={"KEYBRAKE_VENDORS_DIR": str(bad.parent)})
    assert broken.exit_code == 1 and "endpoint[1].usd" in broken.output


@pytest.mark.multiprocess
def test_serve_refuses_to_start_on_an_invalid_definition(tmp_path: Path) -> None:
    (tmp_path / "data" / "vendors").mkdir(parents=True)
    (tmp_path / "data" / "vendors" / "smsco.toml").write_text(smsco_toml().replace("[answer]", "[answers]"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keybrake.cli",
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert f"vendor definition {tmp_path}/data/vendors/smsco.toml: answers: is not a known key" in proc.stderr.decode()
    assert not (tmp_path / "data" / "keybrake.db").exists()  # stopped before anything was opened


def test_package_definitions_are_registered_as_built_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in load.package_definitions():  # Keybrake's own definitions: registered at import
        spec = registry.spec(d.name)
        assert spec is not None and load.origin(spec) == "built-in definition", d.name
    package = tmp_path / "kb_test_definitions"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "other.toml").write_text(other())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(load, "PACKAGE", "kb_test_definitions")
    try:
        (spec,) = load.register_package_definitions()
        assert registry.spec("other") is spec and load.origin(spec) == "built-in definition"
        with pytest.raises(DefinitionError, match="'other' is already a built-in vendor"):
            load.register_package_definitions()  # a second definition of a registered name
    finally:
        registry.unregister("other")
        load._PACKAGED.pop("other", None)


def test_keys_of_a_vendor_whose_file_was_removed_are_refused_not_crashed(tmp_path: Path) -> None:
    write_smsco(tmp_path / "vendors")
    load.install(tmp_path / "vendors", explicit=True)
    secret = {"account": "AC1234567890", "token": "t" * 20}
    with KeybrakeThread(tmp_path / "data") as kb:
        kb.add_credential("http://127.0.0.1:9", name="smsco", secret=secret, vendor="smsco")
        key = kb.issue({"daily_usd_cap": 1}, vendor="smsco")
    load.uninstall()  # the file is gone at the next start
    with KeybrakeThread(tmp_path / "data") as kb:
        r = httpx.post(
            f"{kb.url}/smsco/v1/messages", json={"to": ["+1"]}, headers={"Authorization": f"Bearer {key['key']}"}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (403, "vendor_mismatch"), r.text
        assert "smsco, which this server does not serve" in r.json()["error"]["message"]
        (row,) = kb.audit(key_id=key["id"])
        assert row["verdict"] == "denied_vendor_mismatch"


def test_the_cli_issues_a_key_with_a_definitions_policy_field(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_smsco(data / "vendors")
    load.install(data / "vendors", explicit=True)
    with KeybrakeThread(data) as kb:
        kb.add_credential(
            "http://127.0.0.1:9", name="smsco", secret={"account": "AC1", "token": "t" * 16}, vendor="smsco"
        )
    load.uninstall()  # as a fresh `keybrake` process: the command itself reads the directory
    args = ["keys", "issue", "--data-dir", str(data), "--vendor", "smsco", "--daily-usd-cap", "5"]
    issued = _cli(*args, "--policy", '{"allowed_smsco_prefixes": ["+1"]}')
    assert issued.exit_code == 0, issued.output
    assert json.loads(issued.stdout)["policy"]["allowed_smsco_prefixes"] == ["+1"]
    refused = _cli(*args, "--policy", '{"allowed_smsco_prefixes": ["44"]}')
    assert refused.exit_code == 1 and "is not an E.164 prefix" in refused.output


def test_vendors_check_takes_the_packages_own_definitions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "kb_test_defs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "other.toml").write_text(other())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(load, "PACKAGE", "kb_test_defs")
    try:
        load.register_package_definitions()
        ok = _cli("vendors", "check", str(package / "other.toml"))
        assert ok.exit_code == 0, ok.output  # checked against the other vendors, not against itself
        copy = tmp_path / "vendors" / "other.toml"
        copy.parent.mkdir()
        copy.write_text(other())
        clash = _cli("vendors", "check", str(copy))  # an operator's file of the same name is a clash
        assert clash.exit_code == 1 and "'other' is already a built-in vendor" in clash.output
    finally:
        registry.unregister("other")
        load._PACKAGED.pop("other", None)
