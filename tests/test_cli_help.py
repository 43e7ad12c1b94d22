"""Every `--help` lists its subcommands with a short help that is whole: click cuts a command's
first sentence that does not fit the listing with "...", which reads as a broken sentence."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, MutableMapping

import click
import pytest

from keybrake.cli import COMMANDS, LazyGroup, main


def _groups(group: click.Group, path: tuple[str, ...] = ("keybrake",)) -> Iterator[tuple[tuple[str, ...], click.Group]]:
    yield path, group
    for name, cmd in _commands(group).items():
        if isinstance(cmd, click.Group):
            yield from _groups(cmd, (*path, name))


def _commands(group: click.Group) -> MutableMapping[str, click.Command]:
    """Every subcommand of `group`, the lazily imported ones (keybrake.cli.LazyGroup) included."""
    return group.load_all() if isinstance(group, LazyGroup) else group.commands


GROUPS = list(_groups(main))


def _listing(path: tuple[str, ...], group: click.Group) -> list[str]:
    """The "Commands:" section of the group's `--help`, as click prints it 80 columns wide."""
    ctx = click.Context(group, info_name=" ".join(path), terminal_width=80)
    text = group.get_help(ctx)
    return text[text.index("Commands:") :].splitlines()[1:]


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[" ".join(p) for p, _ in GROUPS])
def test_no_short_help_is_cut(path: tuple[str, ...], group: click.Group) -> None:
    lines = _listing(path, group)
    assert len([ln for ln in lines if ln.startswith("  ") and not ln.startswith("   ")]) == len(_commands(group))
    cut = [ln for ln in lines if ln.rstrip().endswith("...")]
    assert cut == [], f"{' '.join(path)} --help cuts: {cut}"
    for name, cmd in _commands(group).items():
        assert cmd.get_short_help_str(limit=10_000), f"{' '.join((*path, name))} has no help"


def test_the_listing_is_really_checked() -> None:
    """A long first sentence is cut by click: the check above would see it."""
    g = click.Group("g", commands=[click.Command("c", help="word " * 30)])
    assert any(ln.rstrip().endswith("...") for ln in _listing(("g",), g))


def test_every_lazy_command_is_the_command_it_names() -> None:
    """`keybrake.cli.COMMANDS` maps each name to its module's command: all load, none renamed."""
    assert sorted(main.load_all()) == sorted(COMMANDS)
    wrong = LazyGroup("g", lazy={"mcp": "keybrake.cli.serve:serve"})
    with pytest.raises(RuntimeError, match="is not the click command 'mcp'"):
        wrong.get_command(click.Context(wrong), "mcp")


def test_keybrake_mcp_loads_neither_the_store_nor_the_admin_layer() -> None:
    """The stdio relay runs on an agent's machine: its start imports only what it uses."""
    code = (
        "import sys, click; from keybrake.cli import main; main.get_command(click.Context(main), 'mcp'); "
        "print(sorted(m for m in sys.modules if m.startswith(('keybrake.store', 'keybrake.admin', "
        "'keybrake.proxy', 'keybrake.jobs', 'keybrake.app', 'fastapi', 'sqlalchemy'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
