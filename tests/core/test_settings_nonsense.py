"""Every `KEYBRAKE_*` setting against the values a 2 a.m. operator (or a templating bug) gives it:
a doubled sign, digits of another script, digit-group underscores, exponent notation, a blank
value, a lifetime past what the store can hold. Each is refused with a message naming the
variable (a SettingsError, which the command line prints in one line), never read as a number
it does not spell in plain ASCII digits, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.config import Settings, SettingsError, from_env
from keybrake.envvars import Env
from tests.core.test_settings_family import _read, read_names

# Settings that name a file or directory: any non-blank text is a path.
PATHS = {"KEYBRAKE_DATA_DIR", "KEYBRAKE_MASTER_KEY_FILE", "KEYBRAKE_ADMIN_SOCKET"}
# Host names may be "1e3" (a valid DNS label).
HOSTS = {"KEYBRAKE_HOST", "KEYBRAKE_ADMIN_HOST", "KEYBRAKE_UPSTREAM_HOSTS"}
NONSENSE = ["--5", "١٢", "1_0", "1e3", "  ", "\t"]


@pytest.mark.parametrize("value", NONSENSE)
def test_no_setting_takes_nonsense_quietly(tmp_path: Path, value: str) -> None:
    names = sorted(read_names(tmp_path))
    quiet: list[str] = []
    for name in names:
        if (name in PATHS and value.strip()) or (name in HOSTS and value == "1e3"):
            continue
        try:
            _read({name: value}, tmp_path)
        except SettingsError as exc:
            assert name in str(exc), (name, str(exc))
        else:
            quiet.append(name)
    assert quiet == [], f"{value!r} accepted without a word by: {quiet}"


def test_an_empty_data_dir_variable_is_the_default_not_the_working_directory() -> None:
    assert from_env({"KEYBRAKE_DATA_DIR": ""}).data_dir == Settings().data_dir


@pytest.mark.parametrize("name", ["KEYBRAKE_DEFAULT_KEY_TTL", "KEYBRAKE_MAX_KEY_TTL"])
def test_a_key_lifetime_past_what_the_store_holds_is_refused(name: str) -> None:
    env = {"KEYBRAKE_DEFAULT_KEY_TTL": "1h", "KEYBRAKE_MAX_KEY_TTL": "1h", name: "99999999999999d"}
    if name == "KEYBRAKE_DEFAULT_KEY_TTL":
        env["KEYBRAKE_MAX_KEY_TTL"] = "99999999999999d"
    with pytest.raises(SettingsError, match=name):
        from_env(env)


_ASCII_INT = st.from_regex(r"-?[0-9]{1,12}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(categories=["Nd", "Pc", "Pd", "Zs", "Ll"]), max_size=8))
def test_numbers_are_ascii_literals_or_refused_by_name(text: str) -> None:
    env = Env({"KEYBRAKE_X": text})
    reads = (lambda: env.integer("KEYBRAKE_X"), lambda: env.number("KEYBRAKE_X"), lambda: env.decimal("KEYBRAKE_X"))
    for read in reads:
        try:
            value = read()
        except SettingsError as exc:
            assert "KEYBRAKE_X" in str(exc)
        else:
            literal = text.strip()
            assert literal.isascii() and "_" not in literal and "e" not in literal.lower(), (text, value)


@given(text=_ASCII_INT)
def test_plain_ascii_whole_numbers_are_read(text: str) -> None:
    assert Env({"KEYBRAKE_X": f" {text} "}).integer("KEYBRAKE_X") == int(text)


@pytest.mark.parametrize("name", ["KEYBRAKE_ADMIN_PORT", "KEYBRAKE_ADMIN_HOST", "KEYBRAKE_PORT", "KEYBRAKE_HOST"])
def test_an_empty_listener_setting_is_refused_not_the_admin_api_on_the_proxy_port(name: str) -> None:
    # KEYBRAKE_ADMIN_PORT=${ADMIN_PORT} with the template's variable unset: the operator meant the
    # admin API on a listener of its own; starting without one would serve it on the proxy port.
    env = {"KEYBRAKE_ADMIN_PORT": "9091", name: ""}
    with pytest.raises(SettingsError, match=name):
        from_env(env)
