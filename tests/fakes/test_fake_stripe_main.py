"""`python -m tests.fakes.stripe_server` (scripts/fake-stripe): the fake Stripe API run on its own
prints its URL and the secret it accepts, answers stripe-python's calls, and stops on SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import stripe

ROOT = Path(__file__).resolve().parents[2]


def test_the_standalone_fake_prints_its_url_and_secret_and_serves_stripe_python() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.stripe_server", "--port", "0", "--secret", "sk_test_standalone_1234"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"on (http://127\.0\.0\.1:\d+) ", proc.stdout.readline())
        assert url is not None
        assert proc.stdout.readline().strip() == "secret key it accepts: sk_test_standalone_1234"
        client = stripe.StripeClient("sk_test_standalone_1234", base_addresses={"api": url.group(1)})
        customer = client.v1.customers.create({"name": "Demo"})
        assert client.v1.customers.retrieve(customer.id).name == "Demo"
        intent = client.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
        assert intent.status == "succeeded"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
