"""A sandbox vendor served from a background thread, for the official (blocking) SDKs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import TypeVar

import pytest

from keybrake.demo.sandbox import Sandbox
from keybrake.demo.sandbox_resend import ResendSandbox
from keybrake.demo.sandbox_stripe import StripeSandbox
from keybrake.demo.sandbox_twilio import TwilioSandbox

S = TypeVar("S", bound=Sandbox)


def _serve(sandbox: S) -> Iterator[S]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(sandbox.start(), loop).result(10)
        yield sandbox
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def stripe_sandbox() -> Iterator[StripeSandbox]:
    yield from _serve(StripeSandbox("sk_test_sandbox_0123456789"))


@pytest.fixture
def twilio_sandbox() -> Iterator[TwilioSandbox]:
    yield from _serve(TwilioSandbox())


@pytest.fixture
def resend_sandbox() -> Iterator[ResendSandbox]:
    yield from _serve(ResendSandbox())
