"""approval.requested as a person sees it (docs/approvals.md): the Slack message and the decision
page, whatever the agent put in the parts it controls (endpoint, request summary, label, run id).

The agent must not be able to add a link, a mention or formatting, break a line, or change what
the message says about the amount, the expiry or how to decide: with hostile values the message's
skeleton (everything outside the inline-code spans that hold the agent's values) is the skeleton
of the same message with harmless values, and the only `<…>` in it are Keybrake's own links.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.admin import approval_page
from keybrake.core.approvals import decision_links, link_secret
from keybrake.core.money import human_usd
from keybrake.core.timefmt import rfc3339
from keybrake.jobs.alert_format import approval_data, slack_message
from keybrake.jobs.approval_message import MAX_TEXT, one_line
from keybrake.store.records import ApprovalRecord
from tests.harness import examples

pytestmark = pytest.mark.store_free

AID = "apr_01KBC3Y8N4J6W2Q5R7T9V0X1Z3"
PUBLIC = "https://keybrake.example.com/some/prefix"
LONG = PUBLIC + "/" + "p" * 400  # fewer details shown, the links kept
HUGE = PUBLIC + "/" + "p" * 900  # links too long for the message: it says how to decide instead
SECRET = link_secret(b"\x01" * 32)
NASTY = [
    "<", ">", "|", "&", "`", "```", "*", "_", "~", "\n", "\r\n", "\u2028", "\u202e", "\u200b", "\x00",
    "<!channel>", "<!here|here>", "<@U123>", "<https://evil.example/approve|Approve>", "&lt;", "&amp;gt;",
    ":white_check_mark:", "*Amount:* $0.01", "https://evil.example/x?a=1&b=2", ">quote", "\t", "\x1b[31m",
]  # fmt: skip
hostile = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=8), max_size=40).map("".join),
)
scalar = st.one_of(hostile, st.integers(), st.booleans(), st.none(), st.lists(hostile, max_size=3))


def record(endpoint: str, method: str, label: str | None, run: str | None, summary: Any, reasons: list[str]) -> Any:
    return ApprovalRecord(
        id=AID, audit_id="kbr_01KBC3Y8N4J6W2Q5R7T9V0X1Z3", key_id="vk_01KBC3Y8N4J6W2Q5R7T9", label=label,
        agent_run_id=run, vendor="stripe", method=method, endpoint=endpoint, amount_usd=12_345_678,
        summary=summary, reasons=tuple(reasons), state="pending", created_at=1_764_500_000_000,
        expires_at=1_764_500_030_000, owner="ins_x",
    )  # fmt: skip


def tame(v: Any) -> Any:
    """A harmless value that renders as empty exactly when `v` does (the skeleton says "(none)")."""
    if v is None:
        return None
    return "x" if one_line(v) else ""


def tame_key(k: str, i: int) -> str:
    """A harmless, distinct summary field name, empty (all spaces) exactly when `k` renders empty."""
    return f"x{i}" if one_line(k) else " " * (i + 1)


def text_of(rec: ApprovalRecord, links: bool, public: str = PUBLIC) -> str:
    data = approval_data(rec, decision_links(public, SECRET, rec.id, rec.expires_at) if links else None)
    msg = slack_message({"id": "evt_x", "type": "approval.requested", "created_at": "now", "data": data})
    assert msg["blocks"][0]["text"]["text"] == msg["text"]
    return str(msg["text"])


def skeleton(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "`…`", text)


@settings(max_examples=examples(300), deadline=None)
@given(
    endpoint=hostile,
    method=hostile,
    label=st.none() | hostile,
    run=st.none() | hostile,
    summary=st.none() | st.dictionaries(hostile, scalar, max_size=9),
    reasons=st.lists(hostile, min_size=1, max_size=5),
    links=st.booleans(),
    public=st.sampled_from([PUBLIC, LONG, HUGE]),
)
def test_the_agent_cannot_add_links_formatting_or_lines_to_the_slack_message(
    endpoint: str,
    method: str,
    label: str | None,
    run: str | None,
    summary: Any,
    reasons: list[str],
    links: bool,
    public: str,
) -> None:
    rec = record(endpoint, method, label, run, summary, reasons)
    text = text_of(rec, links, public)
    assert len(text) <= MAX_TEXT
    ours = decision_links(public, SECRET, rec.id, rec.expires_at)
    rest = text.replace(f"<{ours['approve']}|Approve>", "").replace(f"<{ours['deny']}|Deny>", "")
    shown = links and public != HUGE
    assert ("|Approve>" in text) == shown and ("|Deny>" in text) == shown
    assert "<" not in rest and ">" not in rest, text  # no link, mention or quote but ours
    assert not re.search(r"&(?!amp;|lt;|gt;)", rest), text  # every & is an escape
    benign = replace(
        rec,
        endpoint=tame(endpoint),
        method=tame(method),
        label=tame(label),
        agent_run_id=tame(run),
        summary=None if summary is None else {tame_key(k, i): tame(v) for i, (k, v) in enumerate(summary.items())},
        reasons=tuple(tame(r) for r in reasons),
    )
    assert skeleton(text) == skeleton(text_of(benign, links, public))
    lines = text.split("\n")
    assert lines[1] == f"*Amount:* *{human_usd(rec.amount_usd)}* (Keybrake's estimate)"
    assert lines[-2].startswith(f"*Waits until:* {rfc3339(rec.expires_at)};")


@settings(max_examples=examples(200), deadline=None)
@given(
    endpoint=hostile,
    label=st.none() | hostile,
    run=st.none() | hostile,
    summary=st.none() | st.dictionaries(hostile, scalar, max_size=25),
    reasons=st.lists(hostile, min_size=1, max_size=3),
    action=st.sampled_from(["approve", "deny"]),
)
def test_the_decision_page_escapes_every_value_it_shows(
    endpoint: str, label: str | None, run: str | None, summary: Any, reasons: list[str], action: str
) -> None:
    rec = record(endpoint, "POST", label, run, summary, reasons)
    html = approval_page.confirm(rec, action, rec.created_at)
    tags = re.findall(r"<[^>]*>", html)
    fields = None if summary is None else {f"k{i}": 1 for i in range(len(summary))}
    benign = record("x", "POST", "x" if label else label, "x" if run else run, fields, ["x"] * len(reasons))
    assert tags == re.findall(r"<[^>]*>", approval_page.confirm(benign, action, rec.created_at))
    assert human_usd(rec.amount_usd) in html and "<script" not in html.lower()


def test_the_message_without_a_public_url_says_how_to_decide() -> None:
    text = text_of(record("/v1/customers", "POST", "t:a", "run-1", {"amount": "500"}, ["why"]), links=False)
    assert f"keybrake approvals approve {AID}" in text and f"keybrake approvals deny {AID}" in text
    assert f"POST /v1/approvals/{AID}/approve" in text and "KEYBRAKE_PUBLIC_URL" in text
    assert "`amount`: `500`" in text and "`t:a`" in text and "`run-1`" in text and "`/v1/customers`" in text
