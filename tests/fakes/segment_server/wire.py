"""The fake Segment's vocabulary: the Tracking API's limits, message types and how one message is
checked (Segment's HTTP Tracking API reference, "HTTP API Source" in Segment's documentation)."""

from __future__ import annotations

from typing import Any

DEFAULT_WRITE_KEY = "FakeSegmentWriteKey0123456789abc"  # 32 letters and digits, like Segment's keys
MAX_MESSAGE_BYTES = 32 * 1024  # "32KB per event": a single call, or one message of a batch
MAX_BATCH_BYTES = 500 * 1024  # "500KB per batch request"
MAX_BATCH_MESSAGES = 2500  # "each batch request can only have up to 2500 events"

# Endpoint → the message type it records (`/v1/batch` takes each message's own `type`).
TYPES = ("track", "identify", "page", "screen", "group", "alias")

Answer = tuple[int, dict[str, Any]]


def error_body(message: str, code: str = "invalid_request") -> dict[str, Any]:
    """The body of a 400. Segment documents the status, not the body; segment-analytics-python reads
    ``code`` and ``message`` from it (segment/analytics/request.py), so the fake answers those."""
    return {"code": code, "message": message}


class SegmentFailure(Exception):
    """Raised while reading a request; answered with ``status`` and ``error_body(message)``."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        self.answer: Answer = (status, error_body(message, code))
        super().__init__(message)


def problem(message: dict[str, Any], msg_type: str) -> str | None:
    """Why Segment would not accept one message (it still answers 200), or None.

    Documented reasons: no ``userId`` nor ``anonymousId`` ("The HTTP API requires that each
    payload has a userId and/or anonymousId"), a track without ``event``; alias needs
    ``previousId`` and ``userId``, group needs ``groupId`` (the method references).
    """
    if msg_type not in TYPES:
        return f"unknown type {msg_type!r}"
    if msg_type == "alias":
        if not _id(message.get("previousId")) or not _id(message.get("userId")):
            return "alias needs previousId and userId"
        return None
    if not _id(message.get("userId")) and not _id(message.get("anonymousId")):
        return "no userId or anonymousId"
    if msg_type == "track" and not (isinstance(message.get("event"), str) and message["event"]):
        return "track without event"
    if msg_type == "group" and not _id(message.get("groupId")):
        return "group without groupId"
    return None


def _id(value: Any) -> bool:
    return (isinstance(value, str) and value != "") or (isinstance(value, int | float) and not isinstance(value, bool))
