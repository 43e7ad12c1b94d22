"""The docs' examples run as written: every `sh` and `python` block of README.md and
docs/quickstart.md, in order, against a real `keybrake serve` and the repository's fake Stripe API
(`scripts/fake-stripe`), in a private network namespace so the documented ports are free (or on this host's loopback
where namespaces are not allowed and the ports are free).

A block that cannot run here says so in the page (`<!-- not-run: REASON -->` before it); those
are counted and listed, never skipped silently. See tests/docs/mdblocks.py for the markers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.docs.mdblocks import runnable

REPO = Path(__file__).resolve().parents[2]
PAGES = [
    "README.md",
    "docs/quickstart.md",
    "docs/sdk-stripe.md",
    "docs/sdk-resend.md",
    "docs/sdk-twilio.md",
    "docs/sdk-sendgrid.md",
    "docs/sdk-segment.md",
    "docs/sdk-postmark.md",
    "docs/sdk-shopify.md",
    "docs/mcp.md",
]
# The ports the pages use: Keybrake, and the fake Stripe, Resend, Twilio, SendGrid, Segment, Postmark
# and Shopify APIs.
DOC_PORTS = (8080, 12111, 12113, 12114, 12115, 12116, 12117, 12118)
_LINKED = [
    "scripts",
    "src",
    "tests",
    "requirements",
    "pyproject.toml",
    "client",
    "examples",
    "bench",
    "docs",
    "README.md",
    ".venv",
]

pytestmark = pytest.mark.multiprocess


def _namespace_ok() -> bool:
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _mirror(tmp: Path) -> Path:
    """A repository root of links (no keybrake-data/). `scripts/serve` installs only when the
    .venv lacks its stamp: a .venv set up from dev.lock (which includes runtime.lock) gets the
    runtime stamp, so the page's `./scripts/serve` starts at once instead of re-installing."""
    root = tmp / "repo"
    root.mkdir()
    for name in _LINKED:
        (root / name).symlink_to(REPO / name)
    venv = REPO / ".venv"
    # the files scripts/_venv.sh's ensure_venv hashes into its stamps, in its order
    locks = sorted((REPO / "requirements").glob("*.lock"))
    want = hashlib.sha256(
        b"".join(p.read_bytes() for p in [*locks, REPO / "pyproject.toml", REPO / "client" / "pyproject.toml"])
    ).hexdigest()
    dev, runtime = venv / ".keybrake-dev.lock.sha256", venv / ".keybrake-runtime.lock.sha256"
    if (
        dev.exists()
        and dev.read_text().strip() == want
        and (not runtime.exists() or runtime.read_text().strip() != want)
    ):
        runtime.write_text(want + "\n")
    if not runtime.exists() or runtime.read_text().strip() != want:
        pytest.fail(".venv is not installed from the current locks: run ./scripts/test (or ./scripts/serve) first")
    return root


def _ports_free() -> bool:
    for port in DOC_PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def _run(page: str, tmp: Path) -> list[dict[str, Any]]:
    """Run `page` in a private network namespace (`unshare -rn`), or, where namespaces are not
    allowed, on this host's loopback if the documented ports are free (otherwise fail, naming them)."""
    root = _mirror(tmp)
    run = f"exec {sys.executable} -m tests.docs.docrun {REPO / page} --root {root}"
    if _namespace_ok():
        argv = ["unshare", "-rn", "bash", "-c", f"ip link set lo up && {run}"]
    elif _ports_free():
        argv = ["bash", "-c", run]
    else:
        pytest.fail(f"no `unshare -rn` here and a documented port ({DOC_PORTS}) is in use: cannot run the docs")
    # The page's shells get a clean Keybrake environment: only what the page itself sets.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRAKE_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    shutil.rmtree(root / "keybrake-data", ignore_errors=True)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("page", PAGES)
def test_every_block_runs_as_written(page: str, tmp_path: Path) -> None:
    report = _run(page, tmp_path)
    own = [e for e in report if e["where"].startswith(f"{Path(page).name}:")]
    assert len(own) == len(runnable(REPO / page)) > 0
    not_run = [f"{e['where']}: {e['note']}" for e in report if e["kind"] == "not-run"]
    print(f"{page}: {len(own)} blocks, {len(not_run)} marked not-run:", *not_run, sep="\n  ")
    failures = [
        f"{e['where']}: {e.get('error', 'not run: an earlier block failed')}"
        for e in report
        if e["kind"] != "not-run" and not e["ok"]
    ]
    assert not failures, "\n\n".join(failures)
    assert all(e["ok"] for e in report if e["kind"] != "not-run")


# How many blocks each page marks not-run: a new marker must be counted here on purpose.
NOT_RUN = {
    "README.md": 3,
    "docs/quickstart.md": 5,
    "docs/sdk-stripe.md": 1,
    "docs/sdk-resend.md": 1,
    "docs/sdk-twilio.md": 1,
    "docs/sdk-sendgrid.md": 1,
    "docs/sdk-segment.md": 1,
    "docs/sdk-postmark.md": 1,
    "docs/sdk-shopify.md": 1,
    "docs/mcp.md": 0,
}


def test_not_run_blocks_are_counted() -> None:
    """Each page's not-run blocks are exactly the ones counted above (a marker added or removed
    without updating the count fails here, so no block stops running unnoticed)."""
    assert set(NOT_RUN) == set(PAGES)
    for page in PAGES:
        marked = [f"{b.where}: {b.note}" for b in runnable(REPO / page) if b.kind == "not-run"]
        assert len(marked) == NOT_RUN[page], f"{page} marks {len(marked)} blocks not-run:\n" + "\n".join(marked)


def test_markers_name_a_reason() -> None:
    """A not-run block says why; a background block says which address it waits for."""
    kinds = {b.kind for page in PAGES for b in runnable(REPO / page)}
    assert {"not-run", "background"} <= kinds, kinds  # both checks below really look at a block
    for page in PAGES:
        for block in runnable(REPO / page):
            if block.kind == "not-run":
                assert len(block.note) >= 10, f"{block.where}: say why it cannot run"
            if block.kind == "background":
                host, _, port = block.note.rpartition(":")
                assert host and port.isdigit(), f"{block.where}: background needs HOST:PORT, got {block.note!r}"
