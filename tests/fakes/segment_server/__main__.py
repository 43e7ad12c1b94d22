"""`python -m tests.fakes.segment_server [--port 12116]`: the fake Segment tracking API on its own
(docs/sdk-segment.md, "Set it up"); see tests/fakes/standalone.py."""

from __future__ import annotations

from tests.fakes.segment_server.server import FakeSegment
from tests.fakes.segment_server.wire import DEFAULT_WRITE_KEY
from tests.fakes.standalone import main

if __name__ == "__main__":
    main("fake-segment", 12116, lambda: (FakeSegment(), f"the write key {DEFAULT_WRITE_KEY}"))
