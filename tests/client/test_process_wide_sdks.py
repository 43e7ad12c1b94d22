"""SDKs configured process-wide (resend's `api_key`; ShopifyAPI's site and its per-thread headers,
which every asyncio task of a thread shares) hold one run's vault key at a time. Two live runs in
one process (AsyncKeybrake runs agents concurrently) must not silently hand one run's agent the
other run's key: its calls would be checked against the other run's policy (its scope, its
caps) and would keep working after its own key was revoked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keybrake_client import Keybrake, KeybrakeError, denial
from tests.harness import ADMIN_TOKEN, KeybrakeThread

MAIL = {"from": "Acme <bot@mail.acme.io>", "subject": "s", "html": "<p>x</p>"}


@pytest.fixture
def resend_kb(tmp_path: Path) -> Iterator[KeybrakeThread]:
    import resend

    from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResendThread

    saved = resend.api_key, resend.api_url
    with FakeResendThread() as fake, KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.fake.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        yield server
    resend.api_key, resend.api_url = saved


def test_a_second_live_run_never_takes_over_the_first_runs_resend(resend_kb: KeybrakeThread) -> None:
    with Keybrake(resend_kb.url, ADMIN_TOKEN, timeout=10) as kb:
        narrow = kb.run(vendor="resend", run_id="run-narrow", daily_usd_cap=1, allowed_to_domains=["example.com"])
        wide = kb.run(vendor="resend", run_id="run-wide", daily_usd_cap=1, allowed_to_domains=["evil.io"])
        with narrow as a, wide as b:
            rs_a = a.resend()
            try:
                b.resend()  # another agent of the same process starts its run
            except KeybrakeError:
                pass  # refused: the first run's configuration stands
            # run-narrow's agent, prompt-injected, mails outside its scope
            try:
                sent = rs_a.Emails.send({**MAIL, "to": ["spy@evil.io"]})
            except Exception as exc:
                d = denial(exc)
                assert d is not None and d.kind == "scope", exc
                sent = None
            rows = a.audit()
        assert sent is None, "run-narrow mailed spy@evil.io with run-wide's key"
        assert [r.key_id for r in rows] == [a.key.id]


def test_the_holder_frees_resend_when_its_block_ends(resend_kb: KeybrakeThread) -> None:
    import resend

    with Keybrake(resend_kb.url, ADMIN_TOKEN, timeout=10) as kb:
        with kb.run(vendor="resend", run_id="run-1", daily_usd_cap=1) as first:
            first.resend()
            first.resend()  # the holder itself may configure it again
        with kb.run(vendor="resend", run_id="run-2", daily_usd_cap=1) as second:
            assert second.resend().api_key == second.key.secret
        with kb.run(vendor="resend", run_id="run-3", daily_usd_cap=1) as third:
            with pytest.raises(KeybrakeError, match="run-3"):
                with kb.run(vendor="resend", run_id="run-4", daily_usd_cap=1) as fourth:
                    third.resend()
                    fourth.resend()
        assert resend.api_key == third.key.secret


def test_shopify_is_held_per_thread_and_asyncio_tasks_share_it(tmp_path: Path) -> None:
    import threading

    from keybrake_client.vendors.shopify import deactivate
    from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopifyThread

    with FakeShopifyThread() as fake, KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake.fake.base_url, name="shopify", secret=DEFAULT_TOKEN, vendor="shopify")
        with Keybrake(server.url, ADMIN_TOKEN, timeout=10) as kb:
            with (
                kb.run(vendor="shopify", run_id="s-1", daily_usd_cap=1) as a,
                kb.run(vendor="shopify", run_id="s-2", daily_usd_cap=1) as b,
            ):
                a.shopify()
                with pytest.raises(KeybrakeError, match="s-1"):
                    b.shopify()  # the same thread: every asyncio task of it would share the key
                errors: list[BaseException] = []

                def other_thread() -> None:
                    try:
                        b.shopify()  # ShopifyAPI's headers are per thread: allowed
                    except BaseException as exc:  # pragma: no cover - the assertion reports it
                        errors.append(exc)

                t = threading.Thread(target=other_thread)
                t.start()
                t.join()
                assert not errors
                deactivate()
