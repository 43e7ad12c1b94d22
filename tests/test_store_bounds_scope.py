"""The generous store bounds reach every Keybrake the suite starts, module-scoped ones too.

A module-scoped fixture runs before any function-scoped fixture of its first test, so a bound set
per test came too late for it: `test_idempotency_model`'s shared Keybrake kept the 2 s default
deadline and a loaded CI machine answered one of its charges 503 (tests/conftest.py). And a CLI
command run in process reads its settings from the environment, not from the harness: in the
PostgreSQL pass `admin-tokens create` gave up on a pool connection after the default 2 s
(test_admin_token_recovery), so the bounds are in this process's environment as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keybrake.cli.common import settings_for
from keybrake.config import Settings, from_env
from keybrake.store.pg_conn import PGOptions
from tests import harness


@pytest.fixture(scope="module")
def module_bounds() -> dict[str, Any]:
    return dict(harness.STORE_BOUNDS)  # what a module-scoped KeybrakeThread would be started with


def test_a_module_fixture_starts_with_the_loaded_bounds(module_bounds: dict[str, Any]) -> None:
    assert module_bounds == harness.LOADED_BOUNDS


@pytest.mark.store_defaults
def test_a_test_marked_store_defaults_gets_the_defaults(module_bounds: dict[str, Any]) -> None:
    assert harness.STORE_BOUNDS == {}
    assert module_bounds == harness.LOADED_BOUNDS  # the module's own stays as it was


def test_the_module_bounds_are_back_after_a_marked_test() -> None:
    assert harness.STORE_BOUNDS == harness.LOADED_BOUNDS


def test_a_serve_process_reads_the_same_bounds_from_its_environment(tmp_path: Path) -> None:
    """spawn_keybrake passes the bounds as `keybrake serve` reads them (tests/harness.py BOUND_ENV)."""
    env = {harness.BOUND_ENV[name]: str(value) for name, value in harness.LOADED_BOUNDS.items()}
    settings = from_env({**env, "KEYBRAKE_DATA_DIR": str(tmp_path)})
    assert {name: getattr(settings, name) for name in harness.LOADED_BOUNDS} == harness.LOADED_BOUNDS


def _bounds_of(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in harness.LOADED_BOUNDS}


def test_a_cli_command_run_in_process_takes_the_loaded_bounds(tmp_path: Path) -> None:
    """What every CLI command starts from (keybrake.cli.common.settings_for reads os.environ)."""
    assert _bounds_of(settings_for(str(tmp_path))) == harness.LOADED_BOUNDS


@pytest.mark.store_defaults
def test_a_cli_command_in_a_store_defaults_test_takes_the_documented_defaults(tmp_path: Path) -> None:
    defaults = Settings(data_dir=tmp_path)
    assert _bounds_of(settings_for(str(tmp_path))) == _bounds_of(defaults)
    assert _bounds_of(defaults) != harness.LOADED_BOUNDS  # else this test could not fail


def test_the_environment_is_back_after_a_store_defaults_test(tmp_path: Path) -> None:
    assert _bounds_of(settings_for(str(tmp_path))) == harness.LOADED_BOUNDS


def test_a_store_a_test_opens_itself_takes_the_loaded_bounds() -> None:
    """harness.store_options: what open_store(..., pg=…) in a test gets (a store opened with the
    defaults lost a transaction to the 1 s idle-in-transaction limit on a loaded pass)."""
    opts = harness.store_options()
    got = (opts.pool_timeout_s, opts.statement_timeout_ms, opts.idle_tx_timeout_ms)
    loaded = harness.LOADED_BOUNDS
    assert got == (loaded["pg_pool_timeout_s"], loaded["pg_statement_timeout_ms"], loaded["pg_idle_tx_timeout_ms"])


@pytest.mark.store_defaults
def test_a_store_a_store_defaults_test_opens_takes_the_defaults() -> None:
    assert harness.store_options() == PGOptions()
