"""`keybrake serve` as a new user meets it: one serve per embedded store (a lock that a kill -9
does not leave stale), a port in use said in one line naming the setting, a new data directory
said out loud, and every store command refusing a data directory that does not exist."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from keybrake.cli import LazyGroup, main
from tests.harness import ADMIN_TOKEN, free_port, spawn_keybrake

pytestmark = [pytest.mark.multiprocess, pytest.mark.sqlite_only]
ENV = {"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}


def _serve(data: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """A `keybrake serve` expected to stop at start; its exit and output."""
    env = {k: v for k, v in os.environ.items() if k != "KEYBRAKE_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "keybrake.cli", "serve", "--port", str(port), "--data-dir", str(data), *args],
        env={**env, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_serve_on_one_store_is_refused_and_a_killed_one_leaves_no_stale_lock(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = spawn_keybrake(data, free_port(), env=ENV)
    try:
        for args in ((), ("--shared-data-dir",)):
            out = _serve(data, free_port(), *args)
            assert out.returncode == 1, out.stderr
            assert f"Error: {data} is in use" in out.stderr and "--shared-data-dir" in out.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    again = spawn_keybrake(data, free_port(), env=ENV)  # the kernel dropped the lock with the process
    again.send_signal(signal.SIGTERM)
    again.wait(20)


def test_a_shared_serve_refuses_an_exclusive_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shared = spawn_keybrake(data, free_port(), env=ENV, args=("--shared-data-dir",))
    try:
        out = _serve(data, free_port())
        assert out.returncode == 1 and "another keybrake serve is using it" in out.stderr
    finally:
        shared.send_signal(signal.SIGTERM)
        shared.wait(20)


@pytest.mark.parametrize("which", ["proxy", "admin"])
def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path, which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if which == "proxy":
            out = _serve(tmp_path / "data", port)
            flag = "--port or KEYBRAKE_PORT"
        else:
            out = _serve(tmp_path / "data", free_port(), "--admin-port", str(port))
            flag = "--admin-port or KEYBRAKE_ADMIN_PORT"
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"Error: port {port} on 127.0.0.1 is already in use (another keybrake serve, or another program): "
        f"stop it, or choose another port with {flag}"
    ]
    assert not (tmp_path / "data").exists()  # nothing was created


def test_a_new_data_dir_is_said_out_loud(tmp_path: Path) -> None:
    data, log = tmp_path / "typo", tmp_path / "serve.log"
    proc = spawn_keybrake(data, free_port(), env=ENV, log_path=log)
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert f"keybrake: creating a new data directory {data.absolute()} " in log.read_text()
    log.write_text("")
    proc = spawn_keybrake(data, free_port(), env=ENV, log_path=log)  # an existing store: nothing said
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert "creating a new" not in log.read_text()


def test_serve_names_the_web_console_on_the_admin_listener(tmp_path: Path) -> None:
    log, admin = tmp_path / "serve.log", free_port()
    proc = spawn_keybrake(tmp_path / "d", free_port(), env=ENV, log_path=log, args=("--admin-port", str(admin)))
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert f"web console: http://127.0.0.1:{admin}/console (sign in with an admin token)" in log.read_text()
    log.write_text("")
    proc = spawn_keybrake(tmp_path / "d", free_port(), env=ENV, log_path=log)  # one port: no console
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert "web console" not in log.read_text()


# Every command that reads the store, with the arguments it needs; a command with --data-dir
# that is not here (and not below) fails the family test, so a new one must be added.
STORE_COMMANDS: dict[str, list[str]] = {
    "db upgrade": [],
    "migrate-sqlite-to-postgres": ["--to", "postgresql://127.0.0.1:5432/none"],
    "credentials add": ["--vendor", "stripe", "--secret", "sk_test_x"],
    "credentials list": [],
    "credentials show": ["default"],
    "credentials rotate": ["default", "--secret", "sk_test_x"],
    "credentials delete": ["default"],
    "keys issue": ["--vendor", "stripe"],
    "keys list": [],
    "keys show": ["vk_x"],
    "keys update": ["vk_x", "--label", "x"],
    "keys revoke": ["vk_x"],
    "budgets create": ["--name", "b", "--all", "--daily-usd-cap", "1"],
    "budgets list": [],
    "budgets show": ["bud_x"],
    "budgets update": ["bud_x", "--name", "c"],
    "budgets delete": ["bud_x"],
    "alerts create": ["--type", "webhook", "--url", "https://example.com/h", "--event", "cap.hit"],
    "alerts list": [],
    "alerts deliveries": [],
    "alerts delete": ["alr_x"],
    "audit query": [],
    "audit export": [],
    "audit show": ["x"],
    "audit purge": [],
    "approvals list": [],
    "approvals get": ["apr_x"],
    "approvals approve": ["apr_x"],
    "approvals deny": ["apr_x", "--reason", "no"],
    "audit tail": [],
    "spend": [],
    "admin-tokens create": ["--label", "x"],
    "admin-tokens list": [],
    "admin-tokens revoke": ["adm_x"],
}
# Commands with --data-dir that do not read the store: serve creates it; vendors read definitions.
NOT_STORE = {"serve", "vendors list", "vendors guarded"}


def _with_data_dir(group: click.Group, prefix: str = "") -> set[str]:
    out: set[str] = set()
    commands = group.load_all() if isinstance(group, LazyGroup) else group.commands
    for name, cmd in commands.items():
        path = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out |= _with_data_dir(cmd, path + " ")
        elif any(p.name == "data_dir" for p in cmd.params):
            out.add(path)
    return out


def test_every_store_command_refuses_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    assert _with_data_dir(main) - NOT_STORE == set(STORE_COMMANDS)
    missing = tmp_path / "keybrake-dta"
    env = {"KEYBRAKE_DATABASE_URL": "", "KEYBRAKE_DATA_DIR": ""}
    for command, args in STORE_COMMANDS.items():
        out = CliRunner().invoke(main, [*command.split(), *args, "--data-dir", str(missing)], env=env)
        assert out.exit_code == 1, (command, out.output)
        assert f"data directory {missing} does not exist" in out.output, (command, out.output)
        assert not missing.exists(), command
