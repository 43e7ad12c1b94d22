"""The bootstrap admin token file is the server's own: mode 0600 and a regular file of the data
directory, whatever was at its path before (a file left with a wider mode, a symbolic link planted
by someone who could write there)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.crypto import write_secret_file
from tests.harness import KeybrakeThread

BOOTSTRAP = "bootstrap-admin-token"


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_a_file_left_at_the_path_with_a_wide_mode_does_not_keep_it(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    left = data / BOOTSTRAP
    left.write_text("old\n")
    left.chmod(0o644)  # a copy restored without its mode, or a file made by hand
    old = os.umask(umask)
    try:
        with KeybrakeThread(data, admin_token=None):
            pass
    finally:
        os.umask(old)
    assert left.read_text().startswith("kb_")
    assert stat.S_IMODE(left.stat().st_mode) == 0o600


def test_a_planted_symbolic_link_does_not_carry_the_token_elsewhere(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "readable-by-others"
    data.mkdir()
    outside.write_text("")
    outside.chmod(0o666)
    (data / BOOTSTRAP).symlink_to(outside)
    with KeybrakeThread(data, admin_token=None):
        pass
    assert outside.read_text() == ""  # the token never went through the link
    path = data / BOOTSTRAP
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("kb_")


_BEFORE = st.sampled_from(["nothing", "file", "link-to-file", "dangling-link"])


@settings(max_examples=60, deadline=None)
@given(before=_BEFORE, mode=st.integers(0o400, 0o777), umask=st.integers(0, 0o777), text=st.text(max_size=40))
def test_a_secret_file_is_always_a_fresh_0600_file(
    tmp_path_factory: pytest.TempPathFactory, before: str, mode: int, umask: int, text: str
) -> None:
    d = tmp_path_factory.mktemp("secret")
    path, target = d / "secret", d / "target"
    if before == "file":
        path.write_text("old")
        path.chmod(mode)
    elif before == "link-to-file":
        target.write_text("old")
        target.chmod(mode)
        path.symlink_to(target)
    elif before == "dangling-link":
        path.symlink_to(target)
    old = os.umask(umask)
    try:
        write_secret_file(path, text)
    finally:
        os.umask(old)
    assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().decode() == text
    assert sorted(p.name for p in d.iterdir()) == sorted({"secret", *(["target"] if target.exists() else [])})
    if before == "link-to-file":
        assert target.read_text() == "old"
    if before == "dangling-link":
        assert not target.exists()
