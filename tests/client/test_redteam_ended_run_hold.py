"""Red team: a run whose block has ended configuring a process-wide SDK again.

`run.resend()` holds the `resend` module for its run until the run's block ends. A prompt-injected
agent that kept its (now revoked) run object can call `run.resend()` after the block: that run
then holds `resend` again, with nothing left to free it, and every later run of the process is
refused `resend` ("run … still holds it") — one stale reference locks a process-wide SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keybrake_client import Keybrake, KeybrakeError
from tests.harness import ADMIN_TOKEN, KeybrakeThread


@pytest.fixture
def resend_kb(tmp_path: Path) -> Iterator[KeybrakeThread]:
    import resend

    from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResendThread

    saved = resend.api_key, resend.api_url
    with FakeResendThread() as fake, KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.fake.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        yield server
    resend.api_key, resend.api_url = saved


def test_an_ended_run_cannot_take_resend_back_from_later_runs(resend_kb: KeybrakeThread) -> None:
    with Keybrake(resend_kb.url, ADMIN_TOKEN, timeout=10) as kb:
        with kb.run(vendor="resend", run_id="run-old", daily_usd_cap=1) as old:
            old.resend()
        with pytest.raises(KeybrakeError, match="run-old"):
            old.resend()  # its block has ended: it holds nothing, and takes nothing again
        with kb.run(vendor="resend", run_id="run-new", daily_usd_cap=1) as new:
            assert new.resend().api_key == new.key.secret
