"""The command line explains itself: `keybrake --version`, and help text on every command and every
option of the whole click tree (a new command or option without help fails here)."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from keybrake.cli import main


def _walk(cmd: click.Command, path: str = "keybrake") -> Iterator[tuple[str, click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    missing = []
    commands = list(_walk(main))
    assert len(commands) > 35
    for path, cmd in commands:
        if not (cmd.help or "").strip():
            missing.append(path)
        for p in cmd.params:
            if isinstance(p, click.Option) and not (p.help or "").strip():
                missing.append(f"{path} {p.opts[0]}")
    assert missing == [], f"no help text: {missing}"


def test_every_help_page_renders() -> None:
    for path, _ in _walk(main):
        out = CliRunner().invoke(main, [*path.split()[1:], "--help"], prog_name="keybrake")
        assert out.exit_code == 0, (path, out.output)
        assert "Usage: keybrake" in out.output


def test_version() -> None:
    out = CliRunner().invoke(main, ["--version"])
    assert out.exit_code == 0 and out.output.startswith("keybrake, version ")
