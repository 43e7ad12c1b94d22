"""A vendor defined by a file serves the tools its definition declares, through the same
pipeline: Postmark's built-in definition (send, batch) against the fake Postmark API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.postmark_server import DEFAULT_SERVER_TOKEN, FakePostmark, FakePostmarkThread
from tests.harness import KeybrakeThread
from tests.mcp_front.conftest import GENEROUS, Connect, text_of

SENDER = "bot@mail.acme.io"


@pytest.fixture
def fake_pm() -> Iterator[FakePostmark]:
    with FakePostmarkThread() as t:
        yield t.fake


@pytest.fixture
def kbp(tmp_path: Path, fake_pm: FakePostmark) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", **GENEROUS) as server:
        server.add_credential(fake_pm.base_url, name="postmark", secret=DEFAULT_SERVER_TOKEN, vendor="postmark")
        yield server


async def test_postmark_tools_from_its_definition(kbp: KeybrakeThread, fake_pm: FakePostmark, connect: Connect) -> None:
    policy = {"daily_send_cap": 3, "allowed_to_domains": ["example.com"], "allowed_from_domains": ["*.acme.io"]}
    key = kbp.issue(policy, vendor="postmark", label="test:mailer")
    one = {"From": SENDER, "To": "ana@example.com", "Subject": "Your receipt", "TextBody": "Thanks!"}
    async with connect(kbp.url, key["key"]) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert {"postmark_send_email", "postmark_send_batch"} <= set(tools)
        assert "allowed_to_domains: example.com" in (tools["postmark_send_email"].description or "")
        sent = await c.call_tool("postmark_send_email", one)
        assert not sent.is_error, text_of(sent)
        batch = await c.call_tool("postmark_send_batch", {"messages": [one, {**one, "To": "bo@example.com"}]})
        assert not batch.is_error, text_of(batch)
        over = await c.call_tool("postmark_send_email", {**one, "Subject": "one more"})
        assert over.is_error and "send_cap_exceeded" in text_of(over)
        outside = await c.call_tool("postmark_send_email", {**one, "To": "x@elsewhere.test", "Subject": "z"})
        assert outside.is_error and "scope_violation" in text_of(outside)
    assert len(fake_pm.messages) == 3
    rows = kbp.audit(key_id=key["id"])
    assert sorted((r["metadata"]["mcp"]["tool"], r["verdict"]) for r in rows) == [
        ("postmark_send_batch", "allowed"),
        ("postmark_send_email", "allowed"),
        ("postmark_send_email", "cap_exceeded"),
        ("postmark_send_email", "denied_scope_violation"),
    ]
