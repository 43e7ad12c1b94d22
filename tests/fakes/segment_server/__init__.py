"""A small in-memory fake of Segment's HTTP Tracking API on loopback, for tests.

Follows Segment's "HTTP API Source" documentation (the Tracking API reference):

- ``POST /v1/track|identify|page|screen|group|alias`` take one message (its type is the path);
  ``POST /v1/batch`` takes ``{"batch": [message, …]}``, each with its own ``type``. Every accepted
  request is answered 200 ``{"success": true}``.
- Auth: the write key as the HTTP Basic user (empty password), or as the body's ``writeKey``
  (Segment documents both). Segment answers 200 whatever the key, so does the fake: the messages
  of a request with an unknown or missing write key are dropped, not stored.
- "Segment returns a 200 response for all API requests except errors caused by large payloads
  and JSON errors (which return 400 responses)": a body over 32 KB (32,768 bytes) on a single
  call, over 500 KB (512,000 bytes) on ``/v1/batch``, a batch message over 32 KB, more than 2,500
  messages, a body that is not a JSON object, or a Content-Type other than ``application/json``
  → 400. ``Content-Encoding: gzip`` bodies are accepted (segment-analytics-python's ``gzip``).
- Messages Segment does not accept but still answers 200 for (no ``userId``/``anonymousId``, a
  track without ``event``, a repeated ``messageId``: Segment deduplicates on it) are kept in
  ``dropped`` with the reason.

Our choices where Segment documents nothing: the 400 body is ``{"code", "message"}``, the two
members segment-analytics-python reads; unknown paths are 404 and other methods 405 in that shape.

Usage::

    with FakeSegmentThread() as t:
        ...t.base_url, t.fake.events, t.fake.requests...
"""

from tests.fakes.segment_server.server import FakeSegment, FakeSegmentThread
from tests.fakes.segment_server.wire import (
    DEFAULT_WRITE_KEY,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    error_body,
)

__all__ = [
    "DEFAULT_WRITE_KEY",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "FakeSegment",
    "FakeSegmentThread",
    "error_body",
]
