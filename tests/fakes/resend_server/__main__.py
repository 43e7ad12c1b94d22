"""`python -m tests.fakes.resend_server [--port 12113]`: the fake Resend API on its own
(docs/sdk-resend.md, "Set it up"); see tests/fakes/standalone.py."""

from __future__ import annotations

from tests.fakes.resend_server.server import FakeResend
from tests.fakes.resend_server.wire import DEFAULT_API_KEY
from tests.fakes.standalone import main

if __name__ == "__main__":
    main("fake-resend", 12113, lambda: (FakeResend(), f"the API key {DEFAULT_API_KEY}"))
