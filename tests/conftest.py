from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.stripe_server import FakeStripe, FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripeThread(secret=REAL_SECRET) as t:
        yield t.fake


@pytest.fixture
def kb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[KeybrakeThread]:
    """A running Keybrake with a Stripe credential pointing at the fake Stripe."""
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake_stripe.base_url)
        yield server
