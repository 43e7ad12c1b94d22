"""A retention past what a store's millisecond timestamps hold is refused by name, in the setting
and in `keybrake audit purge --older-than-days`, instead of failing every purge with an overflow."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.config import SettingsError, from_env
from tests.harness import KeybrakeThread

HUGE = str(10**12)  # days: 8.6e19 ms, past a 64-bit integer


def test_the_setting_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match="KEYBRAKE_AUDIT_RETENTION_DAYS"):
        from_env({"KEYBRAKE_AUDIT_RETENTION_DAYS": HUGE})


def test_the_purge_option_is_refused_naming_it(kb: KeybrakeThread) -> None:
    env = {"KEYBRAKE_DATABASE_URL": kb.settings.database_url or "", "KEYBRAKE_ADMIN_TOKEN": ""}
    args = ["audit", "purge", "--older-than-days", HUGE, "--data-dir", str(kb.settings.data_dir)]
    out = CliRunner().invoke(main, args, env=env)
    assert out.exit_code in (1, 2) and "--older-than-days" in out.output, (out.exit_code, out.output, out.exception)
