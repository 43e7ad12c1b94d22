"""`python -m tests.fakes.postmark_server [--port 12117]`: the fake Postmark API on its own
(docs/sdk-postmark.md, "Set it up"); see tests/fakes/standalone.py."""

from __future__ import annotations

from tests.fakes.postmark_server.server import FakePostmark
from tests.fakes.postmark_server.wire import DEFAULT_SERVER_TOKEN
from tests.fakes.standalone import main

if __name__ == "__main__":
    main("fake-postmark", 12117, lambda: (FakePostmark(), f"the server token {DEFAULT_SERVER_TOKEN}"))
