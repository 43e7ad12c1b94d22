"""Every `--help` lists its subcommands with a short help that is whole: click cuts a command's
first sentence that does not fit the listing with "...", which reads as a broken sentence."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from keybrake.cli import main


def _groups(group: click.Group, path: tuple[str, ...] = ("keybrake",)) -> Iterator[tuple[tuple[str, ...], click.Group]]:
    yield path, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _groups(cmd, (*path, name))


GROUPS = list(_groups(main))


def _listing(path: tuple[str, ...], group: click.Group) -> list[str]:
    """The "Commands:" section of the group's `--help`, as click prints it 80 columns wide."""
    ctx = click.Context(group, info_name=" ".join(path), terminal_width=80)
    text = group.get_help(ctx)
    return text[text.index("Commands:") :].splitlines()[1:]


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[" ".join(p) for p, _ in GROUPS])
def test_no_short_help_is_cut(path: tuple[str, ...], group: click.Group) -> None:
    lines = _listing(path, group)
    assert len([ln for ln in lines if ln.startswith("  ") and not ln.startswith("   ")]) == len(group.commands)
    cut = [ln for ln in lines if ln.rstrip().endswith("...")]
    assert cut == [], f"{' '.join(path)} --help cuts: {cut}"
    for name, cmd in group.commands.items():
        assert cmd.get_short_help_str(limit=10_000), f"{' '.join((*path, name))} has no help"


def test_the_listing_is_really_checked() -> None:
    """A long first sentence is cut by click: the check above would see it."""
    g = click.Group("g", commands=[click.Command("c", help="word " * 30)])
    assert any(ln.rstrip().endswith("...") for ln in _listing(("g",), g))
