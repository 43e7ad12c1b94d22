"""One exclusive `keybrake serve` per embedded SQLite store however the store is named: by
--data-dir, by KEYBRAKE_DATABASE_URL=sqlite:///…, relative or absolute, through a symbolic link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.cli.datadir import lock_path
from keybrake.config import Settings
from tests.harness import ADMIN_TOKEN, free_port, spawn_keybrake

pytestmark = [pytest.mark.multiprocess, pytest.mark.sqlite_only]
ENV = {"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}


def _second_serve(cwd: Path, data_dir: str, url: str | None) -> tuple[int | None, str]:
    """A second serve on the same store; (its exit code, or None when it was still serving after
    20 s and had to be stopped; its output)."""
    env = {k: v for k, v in os.environ.items() if k != "KEYBRAKE_DATABASE_URL"}
    env.update(ENV)
    if url is not None:
        env["KEYBRAKE_DATABASE_URL"] = url
    cmd = [sys.executable, "-m", "keybrake.cli", "serve", "--port", str(free_port()), "--data-dir", data_dir]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=20)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        return None, out


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """One exclusive serve holding a store, with a link to its file and one to its directory;
    (the directory above them, the serve). Shared by the spellings: each tries a second serve."""
    root = tmp_path_factory.mktemp("held")
    data = root / "data"
    first = spawn_keybrake(data, free_port(), env=ENV)
    (root / "link.db").symlink_to(data / "keybrake.db")
    (root / "linkdir").symlink_to(data)
    try:
        yield root, first
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)


@pytest.mark.parametrize("spelling", ["url-absolute", "url-relative", "url-through-link", "dir-through-link"])
def test_every_spelling_of_one_store_is_refused_while_an_exclusive_serve_holds_it(
    held: tuple[Path, subprocess.Popen[bytes]], spelling: str
) -> None:
    root, first = held
    data = root / "data"
    data_dir, url = {
        "url-absolute": (str(data), f"sqlite:///{data}/keybrake.db"),
        "url-relative": ("data", "sqlite:///data/keybrake.db"),
        "url-through-link": (str(data), f"sqlite:///{root}/link.db"),
        "dir-through-link": ("linkdir", None),
    }[spelling]
    code, out = _second_serve(root, data_dir, url)
    assert first.poll() is None  # the exclusive serve held the store throughout
    assert code == 1 and "is in use" in out, (code, out[-2000:])


# Path spellings of one directory: itself, with `.` and `sub/..` segments, or through a link.
_STEPS = st.lists(st.sampled_from([".", "sub/..", "link"]), max_size=4)


@settings(max_examples=40, deadline=None)
@given(steps=_STEPS, by_url=st.booleans(), relative=st.booleans())
def test_one_database_file_has_one_lock_path(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str], by_url: bool, relative: bool
) -> None:
    root = tmp_path_factory.mktemp("spell")
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (root / "link").symlink_to(data)
    canonical = lock_path(Settings(data_dir=data))
    spelled = Path("link" if "link" in steps else "data", *[s for s in steps if s != "link"])
    base = spelled if relative else root / spelled
    cwd = os.getcwd()
    os.chdir(root)
    try:
        url = f"sqlite:///{base}/keybrake.db"
        s = Settings(data_dir=Path("elsewhere"), database_url=url) if by_url else Settings(data_dir=base)
        assert lock_path(s) == canonical
    finally:
        os.chdir(cwd)


def test_a_lock_file_that_cannot_be_opened_is_one_line_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "serve.lock").mkdir(parents=True)  # as unusable as a file serve may not write
    code, out = _second_serve(tmp_path, str(data), None)
    assert code == 1, out
    assert "Traceback" not in out
    assert f"Error: cannot open the serve lock {data.resolve() / 'serve.lock'}" in out, out
