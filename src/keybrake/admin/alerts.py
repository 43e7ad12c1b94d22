"""Alert destinations and their deliveries at the API edge (docs/api.md, alerts)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from keybrake.admin.errors import not_found, validation
from keybrake.admin.policy import Strict
from keybrake.core.timefmt import rfc3339
from keybrake.jobs.alert_delivery import alert_url_check
from keybrake.jobs.alert_scans import seed_threshold_marks
from keybrake.jobs.alerts import DEFAULT_THRESHOLDS, EVENTS
from keybrake.runtime import Runtime
from keybrake.store.base import AlertDestination, Delivery

DELIVERY_STATES = ("pending", "delivered", "failed")


class AlertIn(Strict):
    type: str = Field(pattern=r"^(webhook|slack)$")
    url: str = Field(min_length=8, max_length=2000)
    events: list[str] = Field(min_length=1, max_length=len(EVENTS))
    thresholds: list[int] = Field(default_factory=lambda: list(DEFAULT_THRESHOLDS), min_length=1, max_length=10)
    anomaly_factor: float = Field(default=3.0, gt=1, le=1000)

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for e in v:
            if e not in EVENTS:
                raise ValueError(f"{e!r} is not an event; known: {', '.join(EVENTS)}")
        return sorted(set(v))

    @field_validator("thresholds")
    @classmethod
    def _pcts(cls, v: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in v):
            raise ValueError("thresholds are percentages from 1 to 100")
        return sorted(set(v))


async def _check_url(rt: Runtime, url: str) -> list[str]:
    """docs/api.md, alerts: what delivery would refuse is a 400 naming `url`; a host that does not
    resolve now is a warning. Returns the warnings.

    Checked again before every delivery (`keybrake.jobs.alerts`), with the running settings.
    """
    refusal, warnings = await alert_url_check(url, rt.settings)
    if refusal is not None:
        raise validation(refusal, "url")
    return warnings


async def create(rt: Runtime, body: AlertIn) -> dict[str, Any]:
    warnings = await _check_url(rt, body.url)
    alert_id = "alr_" + secrets.token_hex(10)
    secret = "whsec_kb_" + secrets.token_urlsafe(32)
    dest = AlertDestination(
        alert_id,
        body.type,
        body.url,
        rt.sealer.seal(secret.encode(), f"alert:{alert_id}"),
        tuple(body.events),
        tuple(body.thresholds),
        rt.alert_store.now_ms(),
        str(body.anomaly_factor),
    )
    # Before the destination exists for the scans: what crossed before it is never sent to it.
    await seed_threshold_marks(rt.store, dest)
    await rt.alert_store.insert_alert(dest)
    out = render(dest)
    out["secret"] = secret  # shown once
    out["warnings"] = warnings
    return out


def render(dest: AlertDestination) -> dict[str, Any]:
    parts = urlsplit(dest.url)
    return {
        "id": dest.id,
        "object": "alert",
        "type": dest.type,
        # the path of a Slack or webhook URL is itself a secret: show the host only
        "url": f"{parts.scheme}://{parts.netloc}/…",
        "events": list(dest.events),
        "thresholds": list(dest.thresholds),
        "anomaly_factor": float(dest.anomaly_factor),
        "created_at": rfc3339(dest.created_at),
    }


async def delete(rt: Runtime, alert_id: str) -> dict[str, Any]:
    for dest in await rt.alert_store.list_alerts():
        if dest.id == alert_id:
            await rt.alert_store.delete_alert(alert_id)
            return {**render(dest), "deleted": True}
    raise not_found(f"alert {alert_id!r}")


def render_delivery(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "object": "alert_delivery",
        "event_id": d.event_id,
        "alert_id": d.destination_id,
        "type": d.event_type,
        "state": d.state,
        "attempts": d.attempts,
        "response_status": d.last_status,
        "response_error": d.last_error,
        "created_at": rfc3339(d.created_at),
        "next_attempt_at": rfc3339(d.next_attempt_at) if d.state == "pending" else None,
        # the replica (instance id) sending it now; null when no replica holds it
        "claimed_by": d.claimed_by if d.state == "pending" else None,
        "delivered_at": rfc3339(d.delivered_at) if d.delivered_at else None,
    }
