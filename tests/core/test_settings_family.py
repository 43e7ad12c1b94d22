"""Every setting, as a family: each `KEYBRAKE_*` variable Keybrake reads is in the documentation's
table (and the reverse), and each refuses a bad value with a message naming it — never read as a
default (`KEYBRAKE_ALLOW_INSECURE_UPSTREAM=maybe` is not "off")."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from keybrake import envvars
from keybrake.config import Settings, SettingsError, from_env, unknown_settings, with_configured_vendors

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# A value every reader refuses (a number, duration, decimal, boolean, choice, host, URL, token,
# base64 key, host list, network, or a file that does not exist); the others name theirs.
BAD = "abc!"
SPECIAL: dict[str, Callable[[Path], str]] = {
    "KEYBRAKE_DATA_DIR": lambda tmp: str(_file(tmp)),  # exists, not a directory
    "KEYBRAKE_MASTER_KEY_FILE": lambda tmp: str(tmp),  # a directory, not the key file
    "KEYBRAKE_ADMIN_SOCKET": lambda tmp: str(tmp / ("s" * 120) / "admin.sock"),  # too long for a unix socket
}


def _file(tmp: Path) -> Path:
    f = tmp / "a-file"
    f.write_text("x")
    return f


def _read(env: dict[str, str], tmp: Path) -> Settings:
    return with_configured_vendors(from_env(env).with_overrides(data_dir=tmp / "data"), env)


def documented() -> set[str]:
    return set(re.findall(r"^\| `(KEYBRAKE_[A-Z0-9_]+)` \|", DOCS.read_text(), re.M))


def read_names(tmp: Path) -> set[str]:
    """Every variable the readers ask about, set or not."""
    envvars.NAMES.clear()
    _read({}, tmp)
    return {n for n in envvars.NAMES if n.startswith("KEYBRAKE_")}


def test_every_setting_read_is_documented_and_every_documented_one_is_read(tmp_path: Path) -> None:
    read = read_names(tmp_path)
    assert read - documented() == set(), "read but not in docs/operations.md's table"
    assert documented() - read == set(), "in docs/operations.md's table but never read"


def test_every_setting_refuses_a_bad_value_naming_it(tmp_path: Path) -> None:
    names = sorted(read_names(tmp_path))
    assert len(names) > 50
    quiet = []
    for name in names:
        value = SPECIAL[name](tmp_path) if name in SPECIAL else BAD
        try:
            _read({name: value}, tmp_path)
        except SettingsError as exc:
            assert name in str(exc), (name, str(exc))
        else:
            quiet.append(name)
    assert quiet == [], f"accepted a bad value without a word: {quiet}"


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", ""])
def test_a_boolean_takes_only_its_documented_spellings(value: str) -> None:
    with pytest.raises(SettingsError, match="KEYBRAKE_ALLOW_INSECURE_UPSTREAM must be one of 1, true, yes, on"):
        from_env({"KEYBRAKE_ALLOW_INSECURE_UPSTREAM": value})
    for on in ("1", "TRUE", "Yes", "on"):
        assert from_env({"KEYBRAKE_ALLOW_INSECURE_UPSTREAM": on}).allow_insecure_upstream is True
    for off in ("0", "false", "NO", "Off"):
        assert from_env({"KEYBRAKE_ALLOW_INSECURE_UPSTREAM": off}).allow_insecure_upstream is False


def test_port_abc_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^KEYBRAKE_PORT must be a whole number \(got 'abc'\)$"):
        from_env({"KEYBRAKE_PORT": "abc"})
    with pytest.raises(SettingsError, match="KEYBRAKE_PORT must be at most 65535"):
        from_env({"KEYBRAKE_PORT": "80800"})


def test_an_unknown_keybrake_variable_is_named(tmp_path: Path) -> None:
    env = {"KEYBRAKE_PROT": "9090", "KEYBRAKE_PORT": "9090", "KEYBRAKE_TEST_STORE": "sqlite", "KEYBRAKE_VENV": ".v"}
    _read(env, tmp_path)
    assert unknown_settings(env) == ["KEYBRAKE_PROT"]
