"""The Slack message of `approval.requested` (docs/approvals.md): pure, built from the event's `data`.

A person decides from this message, and much of it comes from the agent whose call waits: the
endpoint's path, the request summary's values, and (on some installs) the key's label and run id.
So every such value is shown as inline code (no bold, links or mentions inside it), with Slack's
three control characters escaped (`&`, `<`, `>`), control and format characters (newlines, bidi
overrides, zero-width marks) turned into spaces, and its escaped length capped. The amount is
Keybrake's own estimate, in bold, before anything the agent wrote; the only links in the message
are Keybrake's (the signed approve / deny links when KEYBRAKE_PUBLIC_URL is set), and the whole
text stays under Slack's 3,000-character limit for a section.
"""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal
from typing import Any

from keybrake.core.money import MICRO, human_usd

MAX_VALUE = 64  # escaped characters of one agent-controlled value
MAX_NAME = 24  # of a summary field's name
MAX_ENDPOINT = 120
MAX_REASON = 200
MAX_SUMMARY_FIELDS = 6
MAX_REASONS = 3
MAX_TEXT = 3000  # Slack refuses a section whose text is longer
LONG_LINKS = 600  # links longer than this (a long KEYBRAKE_PUBLIC_URL): one reason, no summary fields
MAX_LINKS = 1500  # longer than this: no links, the message says how to decide instead
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "`": "'"}


def one_line(value: Any) -> str:
    """`value` as one line of visible text: a non-string as JSON; control, format (bidi
    overrides, zero-width marks), surrogate and private-use characters and line breaks as
    spaces; runs of spaces as one. Shared by the decision page (admin.approval_page)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return " ".join("".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text).split())


def plain(value: Any, limit: int) -> str:
    """`value` as text safe inside a Slack mrkdwn code span: `one_line`, `&<>` escaped, backticks
    turned into quotes (they would end the span), at most `limit` characters once escaped
    (cut with `…`)."""
    out: list[str] = []
    size = 0
    for ch in one_line(value):
        piece = _ESCAPES.get(ch, ch)
        if size + len(piece) > limit - 1:
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def code(value: Any, limit: int = MAX_VALUE) -> str:
    """An agent-controlled value as inline code (`plain`); `(none)` when it is empty or missing."""
    text = plain(value, limit) if value is not None else ""
    return f"`{text}`" if text else "_(none)_"


def amount_text(amount_usd: Any) -> str:
    """The event's `amount_usd` (a USD number) as `$12.50`."""
    return human_usd(int(Decimal(str(amount_usd)) * MICRO))


def approval_slack_text(data: dict[str, Any]) -> str:
    """The message for one `approval.requested` event's `data` (`alert_format.approval_data`).

    Its length never depends on how long the agent's values are (each is capped): only on the
    links, so a long KEYBRAKE_PUBLIC_URL shows fewer details rather than passing MAX_TEXT."""
    aid = plain(data["approval_id"], 40)
    lines = [
        f":raised_hand: *Keybrake: a call waits for your approval* ({aid})",
        f"*Amount:* *{amount_text(data['amount_usd'])}* (Keybrake's estimate)",
        f"*Call:* {code(data['vendor'], 32)} {code(data['method'], 16)} {code(data['endpoint'], MAX_ENDPOINT)}",
        f"*Key:* {code(data['key_id'], 40)} · *label* {code(data.get('label'))} · *run* "
        f"{code(data.get('agent_run_id'))}",
    ]
    decide = _decide_line(data.get("links"), aid)
    compact = len(decide) > LONG_LINKS
    summary = data.get("summary")
    if isinstance(summary, dict) and summary:
        shown = 0 if compact else MAX_SUMMARY_FIELDS
        fields = [f"{code(k, MAX_NAME)}: {code(v)}" for k, v in list(summary.items())[:shown]]
        more = len(summary) - len(fields)
        lines.append("*Request:* " + ", ".join(fields) + (f" and {more} more" if fields and more > 0 else ""))
        if not fields:
            lines[-1] += f"{len(summary)} fields, shown on the approval's page"
    reasons = list(data.get("reasons") or [])
    most = 1 if compact else MAX_REASONS
    for reason in reasons[:most]:
        lines.append(f"*Why:* {code(reason, MAX_REASON)}")
    if len(reasons) > most:
        lines.append(f"*Why:* and {len(reasons) - most} more reasons")
    lines.append(f"*Waits until:* {plain(data['expires_at'], 40)}; after that it is refused (approval_timeout)")
    lines.append(decide)
    return "\n".join(lines)


def _decide_line(links: Any, aid: str) -> str:
    """The Approve / Deny links, or how to decide without them (no links, or links too long)."""
    if isinstance(links, dict) and links.get("approve") and links.get("deny"):
        line = (
            f"<{_url(links['approve'])}|Approve> · <{_url(links['deny'])}|Deny> "
            "(each opens a page that asks you to confirm; a link works once, until the hold ends)"
        )
        if len(line) <= MAX_LINKS:
            return line
    return (
        f"Decide with `keybrake approvals approve {aid}` or `keybrake approvals deny {aid} --reason …` "
        f"on the server, or `POST /v1/approvals/{aid}/approve` (or `/deny`) with an admin token. "
        "(With KEYBRAKE_PUBLIC_URL set, and short enough, this message carries approve / deny links.)"
    )


def _url(url: str) -> str:
    """One of Keybrake's own links, kept to printable ASCII without space, `<`, `>`, `|` or a
    backtick (none of which a link Keybrake builds holds), so it can only be one Slack link."""
    return "".join(c for c in url if c.isascii() and c.isprintable() and c not in " <>|`")
