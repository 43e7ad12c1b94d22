"""The HTML pages of a decision link (docs/approvals.md, links): the confirmation a GET shows and
the answers a POST gets. Pure: records in, (status, HTML) out.

Every value is escaped (`html.escape`, quotes included) after `one_line` has made it one line of
visible characters, and capped: much of an approval comes from the agent whose call waits. The
pages load nothing (no script, image, font or stylesheet; `PAGE_HEADERS` forbids them) and the
form posts to the page's own address, query included, which carries the link's signature.
"""

from __future__ import annotations

from html import escape
from typing import Any

from keybrake.core.money import human_usd
from keybrake.core.timefmt import rfc3339
from keybrake.jobs.approval_message import one_line
from keybrake.store.base import ApprovalRecord

MAX_SHOWN = 200  # characters of one agent-controlled value
MAX_FIELDS = 20  # summary fields shown
MAX_REASON = 500  # a deny reason, as the admin API takes it
PAGE_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em;color:rgb(34,34,34)}"
    "th{text-align:left;vertical-align:top;padding:.2em 1em .2em 0;white-space:nowrap}td{padding:.2em 0}"
    "code{background:rgb(243,243,243);padding:0 .2em;word-break:break-all}.amount{font-size:1.3em;font-weight:bold}"
    "button{font-size:1em;padding:.5em 1.5em;margin-top:1em}textarea{width:100%;box-sizing:border-box}"
    ".deny button{background:rgb(176,0,32);color:white;border:0}"
    ".approve button{background:rgb(27,94,32);color:white;border:0}"
)


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """An agent-controlled value as escaped HTML: one visible line, at most `limit` characters."""
    text = one_line(value) if value is not None else ""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text, quote=True)


def document(title: str, body: str) -> str:
    """A whole page: `title` is escaped here, `body` must already be HTML built from escaped parts."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f'<meta name=robots content="noindex,nofollow"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def message(title: str, text: str) -> str:
    """A page that only says something (a refusal, a decision taken): both parts escaped."""
    return document(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def details(rec: ApprovalRecord, now_ms: int) -> str:
    """What the held call is, how much, whose, why and until when: the table of the confirmation page."""
    rows = [
        ("Amount", f'<span class=amount>{escape(human_usd(rec.amount_usd))}</span> (Keybrake\'s estimate)'),
        ("Call", f"<code>{shown(rec.vendor, 40)}</code> <code>{shown(rec.method, 16)}</code> "
                 f"<code>{shown(rec.endpoint)}</code>"),
        ("Key", f"<code>{shown(rec.key_id, 40)}</code>"),
        ("Label", f"<code>{shown(rec.label)}</code>" if rec.label else "(none)"),
        ("Run", f"<code>{shown(rec.agent_run_id)}</code>" if rec.agent_run_id else "(none)"),
    ]  # fmt: skip
    if rec.summary:
        items = list(rec.summary.items())
        fields = "".join(
            f"<li><code>{shown(k, 40)}</code>: <code>{shown(v)}</code></li>" for k, v in items[:MAX_FIELDS]
        )
        more = f"<li>and {len(items) - MAX_FIELDS} more</li>" if len(items) > MAX_FIELDS else ""
        rows.append(("Request", f"<ul>{fields}{more}</ul>"))
    reasons = "".join(f"<li>{shown(r, 400)}</li>" for r in rec.reasons[:10])
    rows.append(("Why", f"<ul>{reasons}</ul>"))
    left = max(0, (rec.expires_at - now_ms) // 1000)
    rows.append(("Waits until", f"{escape(rfc3339(rec.expires_at))} ({left} s from now); then it is refused"))
    rows.append(("Approval", f"<code>{shown(rec.id, 40)}</code>"))
    cells = "".join(f"<tr><th>{escape(name)}</th><td>{html}</td></tr>" for name, html in rows)
    return f"<table>{cells}</table>"


def confirm(rec: ApprovalRecord, action: str, now_ms: int) -> str:
    """The page a GET on a valid link shows: the call, and a form that POSTs the decision to this
    same address. Opening the link decides nothing (chat and mail scanners open links)."""
    verb = "Approve" if action == "approve" else "Deny"
    what = (
        "Approving lets this call go to the vendor as the agent sent it."
        if action == "approve"
        else "Denying refuses this call; the agent is told it was denied, with your reason."
    )
    reason = (
        f"<p><label for=reason>Reason (optional, told to the agent; at most {MAX_REASON} characters)</label>"
        f"<textarea id=reason name=reason rows=3 maxlength={MAX_REASON}></textarea></p>"
        if action == "deny"
        else ""
    )
    form = f"<form method=post class={action}>{reason}<button type=submit>{verb} this call</button></form>"
    body = f"<h1>{verb} this call?</h1><p>{escape(what)}</p>{details(rec, now_ms)}{form}"
    return document(f"Keybrake: {verb.lower()} {rec.id}?", body)


def outcome(rec: ApprovalRecord) -> tuple[str, str]:
    """(title, text) for an approval that is no longer pending: who decided or how it ended."""
    when = rfc3339(rec.decided_at) if rec.decided_at is not None else "—"
    by = one_line(rec.decided_by or "unknown")[:100]
    if rec.state in ("approved", "denied"):
        title = f"Already {rec.state}"
        return title, f"This call was already {rec.state} by {by} at {when}; this link decides nothing more."
    if rec.state == "expired":
        return "The hold ended", f"No one decided in time: the call was refused at {when}. Nothing was decided now."
    if rec.state == "cancelled":
        why = one_line(rec.reason or "")[:200]
        return "The hold ended", f"The call no longer waits ({why}). Nothing was decided now."
    return "The hold ended", f"The call waited until {rfc3339(rec.expires_at)}; it can no longer be decided."
