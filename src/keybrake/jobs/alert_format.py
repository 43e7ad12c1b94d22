"""Pure pieces of alerting (no I/O): event and delivery ids, bodies, signatures, retry delays.

Webhook bodies are `{"id": "evt_…", "type", "created_at", "data"}`, signed in
`X-Keybrake-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (receivers reject
old `t` to stop replays) and carry `X-Keybrake-Event-Id: evt_…` (the same on every retry, so a
receiver can drop a second copy). Slack destinations get an incoming-webhook `{"text": …}` message.
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

from keybrake.core.jsonfmt import dumps
from keybrake.core.money import to_json_number
from keybrake.core.timefmt import rfc3339
from keybrake.core.windows import Window
from keybrake.jobs.approval_message import approval_slack_text
from keybrake.store.base import AlertDestination, ApprovalRecord, CounterUsage, Delivery
from keybrake.store.ids import new_audit_id

MAX_RETRY_DELAY_MS = 3_600_000  # backoff doubles up to an hour
ANOMALY_MIN_REQUESTS = 5  # an hour with fewer requests is never called a spike
ANOMALY_MIN_HOURS = 3  # a baseline needs this many hours of history


def sign(secret: bytes, body: bytes, t: int) -> str:
    """`t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def new_event_id(now_ms: int) -> str:
    """A fresh, time-ordered event id `evt_…` for an event that has no fire-once mark."""
    return "evt_" + new_audit_id(now_ms)[4:]


def event_id_for(fire_key: str) -> str:
    """The event id of a fire-once event: the same on every replica and every retry of the scan."""
    return "evt_" + hashlib.sha256(fire_key.encode()).hexdigest()[:26]


def delivery_id(event_id: str, destination_id: str) -> str:
    """One delivery per (event, destination): queueing the same event twice adds nothing."""
    return "dlv_" + hashlib.sha256(f"{event_id}:{destination_id}".encode()).hexdigest()[:26]


def build_delivery(
    dest: AlertDestination, event_id: str, event_type: str, data: dict[str, Any], at_ms: int
) -> Delivery:
    """The outbox row for one event to one destination; `at_ms` (Unix ms) is the event's time."""
    doc = {"id": event_id, "type": event_type, "created_at": rfc3339(at_ms), "data": data}
    body = dumps(slack_message(doc) if dest.type == "slack" else doc).decode()
    return Delivery(delivery_id(event_id, dest.id), event_id, dest.id, event_type, body, at_ms, at_ms)


def hit_level(used: int, limit: int) -> str:
    """The usage level of a cap refusal: "reached" when `used` (µUSD or a count, what the window
    had taken before the refused request) ≥ `limit`, else the tenth already used, "0"…"9".

    cap.hit fires once per cap, window and level, so at most 11 times per window, and a refusal at
    a lower level (a single request larger than what was left) never silences a later one at a
    higher level (the cap really used up)."""
    if limit <= 0 or used >= limit:
        return "reached"
    return str(max(0, used) * 10 // limit)


def retry_delay_ms(attempts: int, base_s: float) -> int:
    """Delay (ms) before the next try after `attempts` ≥ 1 failed ones: base × 2^(attempts−1), ≤ 1 h."""
    return min(int(base_s * 1000 * 2 ** min(attempts - 1, 20)), MAX_RETRY_DELAY_MS)


def hourly_baselines(
    rows: list[tuple[str, str | None, int, int, int]], hour: int
) -> list[tuple[str, str, int, int, float, float]]:
    """Per key and label prefix: (kind, id, this hour's µUSD, its requests, baseline µUSD, baseline
    requests) from `hourly_totals` rows, for subjects with at least ANOMALY_MIN_REQUESTS this hour
    and ANOMALY_MIN_HOURS of history. The baseline is the average hour since the subject's first
    traffic in the rows (a new key is not compared with hours before it existed)."""
    subjects: dict[tuple[str, str], dict[int, list[int]]] = {}
    for key_id, label, h, cost, reqs in rows:
        names = [("key", key_id)]
        if label and ":" in label:
            names.append(("label_prefix", label.split(":", 1)[0] + ":"))
        for name in names:
            acc = subjects.setdefault(name, {}).setdefault(h, [0, 0])
            acc[0] += cost
            acc[1] += reqs
    out = []
    for (kind, subject), hours in subjects.items():
        cost_now, reqs_now = hours.get(hour, [0, 0])
        past = [h for h in hours if h < hour]
        if reqs_now < ANOMALY_MIN_REQUESTS or not past:
            continue
        observed = (hour - min(past)) // 3_600_000
        if observed < ANOMALY_MIN_HOURS:
            continue
        base_cost = sum(hours[h][0] for h in past) / observed
        base_reqs = sum(hours[h][1] for h in past) / observed
        out.append((kind, subject, cost_now, reqs_now, base_cost, base_reqs))
    return out


def usd(micro: int) -> Decimal:
    """Money in every event's `data`: a JSON number of US dollars, exact (`25.5`, `0.0067`), from µUSD.

    The one helper for event money (docs/api.md, money): never a string."""
    return to_json_number(micro)


def anomaly_data(
    kind: str, subject: str, metrics: list[str], hour: int, cost_now: int, reqs_now: int,
    base_cost: float, base_reqs: float, factor: float,
) -> dict[str, Any]:  # fmt: skip
    """spend.anomaly's `data`: µUSD in, USD numbers out (`usd`); `hour` is the hour's start (Unix ms)."""
    return {
        "scope": kind,
        "id": subject,
        "metrics": metrics,
        "hour_start": rfc3339(hour),
        "spend_usd": usd(cost_now),
        "baseline_spend_usd": usd(int(base_cost)),
        "requests": reqs_now,
        "baseline_requests": round(base_reqs, 2),
        "factor": factor,
    }


def threshold_data(
    c: CounterUsage, kind: str, scope_id: str, name: str, pct: int, window: Window, reset: int | None
) -> dict[str, Any]:
    """cap.threshold's data; `reset` (Unix ms, None for a total cap) is the window's end as the
    store computes window starts (`window_bounds`)."""
    money = c.counter.endswith("_usd")
    return {
        "scope": kind,
        "id": scope_id,
        "cap": name,
        "threshold_pct": pct,
        "limit": usd(c.limit) if money else c.limit,
        "used": usd(c.used + c.reserved) if money else c.used + c.reserved,
        "unit": "usd" if money else "count",
        "window_start": rfc3339(c.window_start) if window is not Window.TOTAL else None,
        "resets_at": rfc3339(reset) if reset is not None else None,
    }


def approval_data(rec: ApprovalRecord, links: dict[str, str] | None = None) -> dict[str, Any]:
    """approval.requested's `data`: what the held call is, how much it moves (USD number, `usd`),
    whose it is, why it waits and until when (docs/approvals.md); `links`, the signed approve /
    deny links (`core.approvals.decision_links`), or None when KEYBRAKE_PUBLIC_URL is not set."""
    return {
        "approval_id": rec.id,
        "audit_id": rec.audit_id,
        "key_id": rec.key_id,
        "label": rec.label,
        "agent_run_id": rec.agent_run_id,
        "vendor": rec.vendor,
        "method": rec.method,
        "endpoint": rec.endpoint,
        "amount_usd": usd(rec.amount_usd),
        "summary": rec.summary,
        "reasons": list(rec.reasons),
        "created_at": rfc3339(rec.created_at),
        "expires_at": rfc3339(rec.expires_at),
        "links": links,
    }


def slack_message(doc: dict[str, Any]) -> dict[str, Any]:
    data = doc["data"]
    if doc["type"] == "cap.threshold":
        text = (
            f":warning: Keybrake: {data['scope']} {data['id']} reached {data['threshold_pct']}% of its "
            f"{data['cap']} ({data['used']} of {data['limit']}{' USD' if data['unit'] == 'usd' else ''})"
        )
    elif doc["type"] == "cap.hit":
        text = f":no_entry: Keybrake: a request was refused by {data['scope']} {data['id']} {data['name']}"
    elif doc["type"] in ("key.revoked", "key.expired"):
        what = "was revoked" if doc["type"] == "key.revoked" else "expired"
        text = f":lock: Keybrake: vault key {data['key_id']} ({data.get('label') or 'no label'}) {what}"
    elif doc["type"] == "spend.anomaly":
        text = (
            f":chart_with_upwards_trend: Keybrake: {data['scope']} {data['id']} spent {data['spend_usd']} USD in "
            f"{data['requests']} requests this hour, over {data['factor']}× its usual hour"
        )
    elif doc["type"] == "approval.requested":
        text = approval_slack_text(data)
    else:
        text = f"Keybrake: {doc['type']}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
