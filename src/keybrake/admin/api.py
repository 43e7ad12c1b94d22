"""The admin HTTP API (FastAPI): one router per resource (`keybrake.admin.routes`), assembled here.

Handlers are thin: they declare their models (the OpenAPI description at /openapi.json), parse,
and call `keys`, `credentials`, `budgets`, `alerts`, `approvals`, `audit` or `spend`. Authentication is the
ASGI gate's (`keybrake.admin.gate`) and one dependency's (`keybrake.admin.auth.require_admin`).
Errors are answered here, in the admin error shape (docs/api.md, errors).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from keybrake.admin.errors import ApiError, field_path, pydantic_message
from keybrake.admin.gate import INTERNAL_ERROR
from keybrake.admin.key_models import key_models
from keybrake.admin.openapi import describe
from keybrake.admin.ready import ReadyProbe
from keybrake.admin.routes import alerts, approvals, audit, budgets, credentials, docs, health, keys, spend
from keybrake.admin.routes.approval_links import router as decision_links
from keybrake.admin.wire import KJSON, error_response
from keybrake.core.errors import EnforcementUnavailable
from keybrake.jobs.alerts import Alerts
from keybrake.logs import event
from keybrake.runtime import Runtime

log = logging.getLogger("keybrake.admin")
ROUTERS = (
    health.router,
    credentials.router,
    budgets.router,
    alerts.router,
    approvals.router,
    audit.router,
    spend.router,
    docs.router,
)  # fmt: skip; the keys router is built per app, second (`keys.build_router`)
__all__ = ["KJSON", "build_admin_app", "error_response"]


def build_admin_app(
    rt: Runtime,
    registry: CollectorRegistry,
    before_read: Callable[[], Awaitable[object]] | None = None,
    alerts: Alerts | None = None,
    wake_approval: Callable[[str], None] | None = None,
) -> FastAPI:
    """The admin app for `rt`. `before_read` lets reads see every row this process has answered
    (pending settlements); `alerts` sends key.revoked events; `registry` is served at /metrics;
    `wake_approval(id)` tells this process's holder of a call that it was decided."""
    app = FastAPI(
        title="Keybrake admin API",
        version="0.1.0",
        docs_url=None,  # /docs is served by `routes.docs`, from the package's files
        redoc_url=None,
        openapi_url=None,  # /openapi.json is served by `openapi.describe`, built off the event loop
        default_response_class=KJSON,
        generate_unique_id_function=lambda route: route.name,  # operationId: `issue_key`, `list_keys`, …
        # No redirect from `/x/` to `/x`: Starlette builds its Location from the client's Host header
        # (an open redirect on the token-free paths); a trailing-slash path is an unknown path, 404.
        redirect_slashes=False,
    )
    app.state.runtime, app.state.registry, app.state.alerts = rt, registry, alerts
    app.state.before_read, app.state.ready = before_read, ReadyProbe(rt.store)
    app.state.wake_approval = wake_approval
    models = key_models(rt.vendor_specs)  # the policy fields of the vendors `rt` serves
    for router in (ROUTERS[0], keys.build_router(models), *ROUTERS[1:]):
        app.include_router(router)
    app.include_router(decision_links)  # token-free pages, signed per link (not in /openapi.json)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(EnforcementUnavailable, _store_down)
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _last_resort)
    describe(app, models.extra_models)
    return app


async def _api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.field)


async def _store_down(request: Request, exc: Exception) -> Response:
    event(log, "admin call failed: store unavailable", logging.ERROR, error=str(exc))
    return error_response(503, "enforcement_unavailable", "the store is unavailable; nothing was changed")


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    """A body FastAPI could not validate: 400 when it is no JSON object at all, else 422 naming the field."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_request", "the body is not valid JSON")
    err = errors[0]
    loc = [p for p in field_path(err["loc"]).split(".") if p]
    msg = pydantic_message(str(err["msg"]))
    if err.get("type") == "extra_forbidden":
        msg = f"unknown field {loc[-1]!r}" if loc else "unknown field"
    if not loc and err.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        return error_response(
            400, "invalid_request", "the body must be a JSON object sent with Content-Type: application/json"
        )
    if err.get("type") == "missing" and not loc:
        return error_response(400, "invalid_request", "a JSON body is required")
    return error_response(422, "validation_error", msg, ".".join(loc) or None)


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        return error_response(404, "not_found", "no such admin endpoint")
    if exc.status_code == 405:
        return error_response(405, "method_not_allowed", "method not allowed on this admin endpoint")
    return error_response(exc.status_code, "invalid_request", str(exc.detail))


async def _last_resort(request: Request, exc: Exception) -> Response:
    # Rendered here; logged (redacted) once by the gate, which sees the exception next.
    return error_response(500, "internal_error", INTERNAL_ERROR)


def warm_routes(app: FastAPI) -> None:
    """Have FastAPI build its per-route state now (blocking, ≈ 0.1 s of CPU): `KeybrakeApp.startup`
    runs it on a worker thread, before the listener opens. FastAPI builds that state (pydantic
    adapters for every route's parameters and models) on the first request it routes, on the event
    loop, which serves proxied calls too: measured, the first admin request held the loop 0.1-0.5 s
    on a loaded machine. Routes one request for a path no route takes through `app.router` on a
    private event loop; the router answers it 404 itself (no handler, store or gate runs)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/_keybrake_warm_routes",
        "raw_path": b"/_keybrake_warm_routes",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    asyncio.run(app.router(scope, receive, send))
