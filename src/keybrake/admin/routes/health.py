"""`/healthz`, `/readyz` (no credential) and `/metrics` (docs/api.md, health and metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import generate_latest

from keybrake.admin.auth import admit, bearer
from keybrake.admin.ready import ReadyProbe
from keybrake.admin.routes.common import ERROR_MEANINGS, runtime
from keybrake.admin.schemas import ErrorBody, Health, Ready
from keybrake.admin.wire import KJSON

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Response:
    """200 `{"status": "ok"}` while the process serves."""
    return KJSON({"status": "ok"})


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready, "description": "the store is not ready"}})
async def readyz(request: Request) -> Response:
    """200 `{"status": "ready"}`, or 503 `{"status": "unavailable", "reason": …}` — always
    within READYZ_DEADLINE_S, whatever the store does; one shared probe per PROBE_EVERY_S."""
    probe: ReadyProbe = request.app.state.ready
    ok, reason = await probe.check()
    if not ok:
        return KJSON({"status": "unavailable", "reason": reason}, status_code=503)
    return KJSON({"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    # Declares the admin bearer scheme in /openapi.json, as `require_admin` does for the /v1 routes;
    # it checks nothing (the gate did, unless KEYBRAKE_METRICS_PUBLIC=1).
    dependencies=[Depends(bearer)],
    responses={
        200: {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
        401: {"model": ErrorBody, "description": ERROR_MEANINGS[401] + "; none needed with KEYBRAKE_METRICS_PUBLIC=1"},
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition (docs/operations.md, metrics)."""
    if not runtime(request).settings.metrics_public:
        await admit(request)
    return Response(generate_latest(request.app.state.registry), media_type="text/plain; version=0.0.4")
