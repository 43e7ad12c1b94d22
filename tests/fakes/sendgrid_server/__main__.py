"""`python -m tests.fakes.sendgrid_server [--port 12115]`: the fake SendGrid API on its own
(docs/sdk-sendgrid.md, "Set it up"); see tests/fakes/standalone.py."""

from __future__ import annotations

from tests.fakes.sendgrid_server.server import FakeSendGrid
from tests.fakes.sendgrid_server.wire import DEFAULT_API_KEY
from tests.fakes.standalone import main

if __name__ == "__main__":
    main("fake-sendgrid", 12115, lambda: (FakeSendGrid(), f"the API key {DEFAULT_API_KEY}"))
