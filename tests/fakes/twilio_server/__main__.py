"""`python -m tests.fakes.twilio_server [--port 12114]`: the fake Twilio API on its own
(docs/sdk-twilio.md, "Set it up"); see tests/fakes/standalone.py."""

from __future__ import annotations

from tests.fakes.standalone import main
from tests.fakes.twilio_server.server import FakeTwilio
from tests.fakes.twilio_server.wire import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

if __name__ == "__main__":
    main(
        "fake-twilio",
        12114,
        lambda: (FakeTwilio(), f"the Account SID {DEFAULT_ACCOUNT_SID} with the auth token {DEFAULT_AUTH_TOKEN}"),
    )
