"""`kb.run()` revokes its key on exit whatever the run id: the revoke's reason names the run id,
and it must never be what keeps the key alive (the request line is capped by
KEYBRAKE_MAX_HEADER_BYTES, at least 1024 bytes; a run id of up to 500 characters is accepted at
issue, and percent-encoded in a query it grows up to 12 bytes a character)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake_client import Keybrake, KeybrakeAPIError, KeybrakeError
from tests.harness import ADMIN_TOKEN, KeybrakeThread


@pytest.fixture(scope="module")
def small_headers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeybrakeThread]:
    from tests.fakes.stripe_server import FakeStripeThread
    from tests.harness import REAL_SECRET

    with FakeStripeThread(secret=REAL_SECRET) as fake:
        with KeybrakeThread(Path(tmp_path_factory.mktemp("kb")) / "data", max_header_bytes=1024) as kb:
            kb.add_credential(fake.fake.base_url)
            yield kb


def _revoked_after_run(kb: KeybrakeThread, run_id: str) -> None:
    with Keybrake(kb.url, ADMIN_TOKEN, timeout=10) as client:
        try:
            ctx = client.run(vendor="stripe", run_id=run_id, daily_usd_cap=1)
            with ctx as run:
                pass
        except KeybrakeAPIError as exc:
            if exc.status in (400, 422) and "run" not in locals():
                return  # the server refused the run id at issue: nothing was issued
            raise
        except KeybrakeError as exc:  # a failed revoke is reported; what matters is the key's state
            assert "revoking" in str(exc), exc
        assert client.get_key(run.key.id).status == "revoked", run_id[:40]


def test_a_long_non_ascii_run_id_still_revokes(small_headers: KeybrakeThread) -> None:
    _revoked_after_run(small_headers, "é" * 400)


CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
RUN_IDS = st.one_of(
    st.text(CHARS, min_size=1, max_size=500),
    st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=150, max_size=500),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=RUN_IDS)
def test_every_accepted_run_id_is_revoked_on_exit(small_headers: KeybrakeThread, run_id: str) -> None:
    if not run_id.strip():
        return  # refused by run() before anything is issued
    _revoked_after_run(small_headers, run_id)
