"""The admin HTTP API (FastAPI: validation and OpenAPI at /openapi.json).

Handlers are thin: they authenticate, parse, and call `keys`, `credentials` or `audit`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import simplejson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from keybrake.admin import alerts as alert_ops
from keybrake.admin import budgets, credentials, keys, spend
from keybrake.admin.audit import decode_cursor, encode_cursor, parse_limit, parse_time, query_from, render_row
from keybrake.admin.errors import ApiError, field_path, not_found, pydantic_message
from keybrake.admin.gate import INTERNAL_ERROR, SCOPE_TOKEN
from keybrake.admin.models import BudgetIn, BulkRevokeIn, CredentialIn, KeyIn, RotateIn
from keybrake.admin.ready import ReadyProbe
from keybrake.core.errors import EnforcementUnavailable
from keybrake.jobs.alerts import Alerts
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.store.base import AdminTokenRecord, KeyQuery

log = logging.getLogger("keybrake.admin")


class KJSON(Response):
    """JSON with money rendered exactly (Decimal → plain decimal number)."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return str(simplejson.dumps(content, use_decimal=True, separators=(",", ":"))).encode()


def _list(data: list[Any]) -> KJSON:
    """A list answer that fits in one page (docs/api.md)."""
    return KJSON({"object": "list", "data": data, "next_cursor": None})


def error_response(status: int, code: str, message: str, field: str | None = None) -> KJSON:
    return KJSON(
        {"error": {"type": "keybrake_error", "code": code, "message": message, "field": field}}, status_code=status
    )


def _query(request: Request, allowed: tuple[str, ...], *, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed and not name.startswith(prefixes or ("\0",)):
            hint = " (Keybrake calls it label_prefix)" if name == "label_contains" else ""
            raise ApiError(400, "invalid_request", f"unknown query parameter {name!r}{hint}", name)
        if name in out:
            raise ApiError(400, "invalid_request", f"query parameter {name!r} given twice", name)
        out[name] = value
    return out


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", "the body is not valid JSON") from None


def build_admin_app(
    rt: Runtime,
    registry: CollectorRegistry,
    before_read: Callable[[], Awaitable[object]] | None = None,
    alerts: Alerts | None = None,
) -> FastAPI:
    """`before_read` lets reads see every row this process has answered (pending settlements)."""
    app = FastAPI(
        title="Keybrake admin API",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        default_response_class=KJSON,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(EnforcementUnavailable)
    async def _store_down(request: Request, exc: EnforcementUnavailable) -> Response:
        event(log, "admin call failed: store unavailable", logging.ERROR, error=str(exc))
        return error_response(503, "enforcement_unavailable", "the store is unavailable; nothing was changed")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(404, "not_found", "no such admin endpoint")
        if exc.status_code == 405:
            return error_response(405, "method_not_allowed", "method not allowed on this admin endpoint")
        return error_response(exc.status_code, "invalid_request", str(exc.detail))

    @app.exception_handler(Exception)
    async def _last_resort(request: Request, exc: Exception) -> Response:
        # Rendered here; logged (redacted) once by the gate, which sees the exception next.
        return error_response(500, "internal_error", INTERNAL_ERROR)

    async def admin(request: Request) -> AdminTokenRecord:
        """The token record the ASGI gate (`keybrake.admin.gate`) found; without one, 401."""
        rec = request.scope.get(SCOPE_TOKEN)
        if not isinstance(rec, AdminTokenRecord):
            raise ApiError(401, "admin_token_invalid", "send 'Authorization: Bearer <admin token>'")
        if before_read is not None:
            await before_read()
        return rec

    Admin = Depends(admin)

    # -- health ---------------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=True)
    async def healthz() -> Response:
        return KJSON({"status": "ok"})

    ready = ReadyProbe(rt.store)

    @app.get("/readyz")
    async def readyz() -> Response:
        """200 `{"status": "ready"}`, or 503 `{"status": "unavailable", "reason": …}` — always
        within READYZ_DEADLINE_S, whatever the store does; one shared probe per PROBE_EVERY_S."""
        ok, reason = await ready.check()
        if not ok:
            return KJSON({"status": "unavailable", "reason": reason}, status_code=503)
        return KJSON({"status": "ready"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not rt.settings.metrics_public:
            await admin(request)
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    # -- keys -----------------------------------------------------------------------------

    @app.post("/v1/keys", status_code=201)
    async def issue_key(body: KeyIn, request: Request, who: AdminTokenRecord = Admin) -> Response:
        idem = request.headers.get("idempotency-key")
        if idem is None:
            out = await keys.issue(rt, body, who.id)
        else:
            out = await keys.issue_idempotent(rt, body, who.id, idem)
        event(log, "key issued", key_id=out["id"], by=who.id, vendor=body.vendor, replayed=idem is not None)
        return KJSON(out, status_code=201)

    @app.get("/v1/keys")
    async def list_keys(request: Request, who: AdminTokenRecord = Admin) -> Response:
        q = _query(
            request,
            ("label_prefix", "label", "vendor", "credential", "status", "limit", "cursor"),
            prefixes=("metadata.",),
        )
        status = q.get("status")
        if status is not None and status not in ("active", "revoked", "expired"):
            raise ApiError(400, "invalid_request", "status must be active, revoked or expired", "status")
        cursor = None
        if "cursor" in q:
            cursor = decode_cursor(q["cursor"])
        query = KeyQuery(
            label_prefix=q.get("label_prefix"),
            label=q.get("label"),
            vendor=q.get("vendor"),
            credential=q.get("credential"),
            status=status,
            metadata={k[9:]: v for k, v in q.items() if k.startswith("metadata.")},
            cursor=cursor,
            limit=parse_limit(q.get("limit")),
        )
        data, raw_cursor = await keys.list_keys(rt, query)
        next_cursor = None
        if raw_cursor:
            created, key_id = raw_cursor.split(":", 1)
            next_cursor = encode_cursor(int(created), key_id)
        return KJSON({"object": "list", "data": data, "next_cursor": next_cursor})

    @app.get("/v1/keys/{key_id}")
    async def get_key(key_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())  # takes none: an unknown one is a 400, never ignored
        return KJSON(await keys.render(rt, await keys.get_record(rt, key_id)))

    @app.patch("/v1/keys/{key_id}")
    async def patch_key(key_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        out = await keys.patch(rt, key_id, await _json_body(request))
        event(log, "key changed", key_id=key_id, by=who.id)
        return KJSON(out)

    @app.delete("/v1/keys/{key_id}")
    async def revoke_key(key_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        q = _query(request, ("reason",))
        body = await _json_body(request)
        reason = q.get("reason")
        if isinstance(body, dict):
            extra = set(body) - {"reason"}
            if extra:
                raise ApiError(422, "validation_error", f"unknown field {sorted(extra)[0]!r}", sorted(extra)[0])
            reason = body.get("reason", reason)
            if reason is not None and not isinstance(reason, str):
                raise ApiError(422, "validation_error", "reason must be a string", "reason")
        elif body is not None:
            raise ApiError(400, "invalid_request", 'the body must be a JSON object like {"reason": "…"}')
        out = await keys.revoke(rt, key_id, reason)
        event(log, "key revoked", key_id=key_id, by=who.id)
        if alerts is not None:
            alerts.key_revoked(await keys.get_record(rt, key_id))
        return KJSON(out)

    @app.post("/v1/keys/revoke")
    async def bulk_revoke(body: BulkRevokeIn, who: AdminTokenRecord = Admin) -> Response:
        out = await keys.bulk_revoke(rt, body)
        event(log, "keys revoked in bulk", count=out["revoked"], by=who.id)
        if alerts is not None and out["revoked"]:
            alerts.soon(alerts.scan_revoked())  # one key.revoked per key revoked, now
        return KJSON(out)

    # -- budgets --------------------------------------------------------------------------

    @app.post("/v1/budgets", status_code=201)
    async def create_budget(body: BudgetIn, who: AdminTokenRecord = Admin) -> Response:
        out = await budgets.create(rt, body)
        event(log, "budget created", budget_id=out["id"], by=who.id)
        return KJSON(out, status_code=201)

    @app.get("/v1/budgets")
    async def list_budgets(request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())
        data = [await budgets.render(rt, b) for b in await rt.store.list_budgets()]
        return _list(data)

    @app.get("/v1/budgets/{budget_id}")
    async def get_budget(budget_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())  # takes none: an unknown one is a 400, never ignored
        return KJSON(await budgets.render(rt, await budgets.get_record(rt, budget_id)))

    @app.patch("/v1/budgets/{budget_id}")
    async def patch_budget(budget_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        out = await budgets.patch(rt, budget_id, await _json_body(request))
        event(log, "budget changed", budget_id=budget_id, by=who.id)
        return KJSON(out)

    @app.delete("/v1/budgets/{budget_id}")
    async def delete_budget(budget_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())  # takes none: an unknown one is a 400, never ignored
        out = await budgets.delete(rt, budget_id)
        event(log, "budget deleted", budget_id=budget_id, by=who.id)
        return KJSON(out)

    # -- spend ----------------------------------------------------------------------------

    @app.get("/v1/spend")
    async def get_spend(request: Request, who: AdminTokenRecord = Admin) -> Response:
        q = _query(request, ("group_by", "since", "until", "label_prefix", "vendor", "timezone"))
        return KJSON(
            await spend.spend(
                rt,
                group_by=q.get("group_by", "key"),
                since=parse_time(q["since"], "since") if "since" in q else None,
                until=parse_time(q["until"], "until") if "until" in q else None,
                label_prefix=q.get("label_prefix"),
                vendor=q.get("vendor"),
                timezone=q.get("timezone", "UTC"),
            )
        )

    # -- alerts ---------------------------------------------------------------------------

    @app.post("/v1/alerts", status_code=201)
    async def create_alert(body: alert_ops.AlertIn, who: AdminTokenRecord = Admin) -> Response:
        out = await alert_ops.create(rt, body)
        event(log, "alert destination created", alert_id=out["id"], by=who.id)
        return KJSON(out, status_code=201)

    @app.get("/v1/alerts")
    async def list_alerts(request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())
        data = [alert_ops.render(d) for d in await rt.store.list_alerts()]
        return _list(data)

    @app.get("/v1/alerts/deliveries")
    async def list_deliveries(request: Request, who: AdminTokenRecord = Admin) -> Response:
        q = _query(request, ("limit", "cursor", "state"))
        limit = parse_limit(q.get("limit"))
        state = q.get("state")
        if state is not None and state not in alert_ops.DELIVERY_STATES:
            raise ApiError(400, "invalid_request", "state must be pending, delivered or failed", "state")
        before = decode_cursor(q["cursor"]) if "cursor" in q else None
        rows = await rt.store.list_deliveries(limit + 1, state=state, before=before)
        more, rows = len(rows) > limit, rows[:limit]
        cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
        return KJSON({"object": "list", "data": [alert_ops.render_delivery(d) for d in rows], "next_cursor": cursor})

    @app.delete("/v1/alerts/{alert_id}")
    async def delete_alert(alert_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())  # takes none: an unknown one is a 400, never ignored
        out = await alert_ops.delete(rt, alert_id)
        event(log, "alert destination deleted", alert_id=alert_id, by=who.id)
        return KJSON(out)

    # -- credentials ----------------------------------------------------------------------

    @app.post("/v1/credentials", status_code=201)
    async def add_credential(body: CredentialIn, who: AdminTokenRecord = Admin) -> Response:
        out = await credentials.add(rt, body)
        event(log, "credential added", credential=body.name, vendor=body.vendor, by=who.id)
        return KJSON(out, status_code=201)

    @app.get("/v1/credentials")
    async def list_credentials(request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())
        data = [await credentials.render(rt, c) for c in await rt.store.list_credentials()]
        return _list(data)

    @app.get("/v1/credentials/{name}")
    async def get_credential(name: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())  # takes none: an unknown one is a 400, never ignored
        return KJSON(await credentials.render(rt, await credentials.get_record(rt, name)))

    @app.post("/v1/credentials/{name}/rotate")
    async def rotate_credential(name: str, body: RotateIn, who: AdminTokenRecord = Admin) -> Response:
        out = await credentials.rotate(rt, name, body)
        event(log, "credential rotated", credential=name, by=who.id)
        return KJSON(out)

    @app.delete("/v1/credentials/{name}")
    async def delete_credential(name: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        q = _query(request, ("revoke_keys",))
        if await request.body():
            msg = "DELETE takes no body: send revoke_keys as ?revoke_keys=true"
            raise ApiError(400, "invalid_request", msg, "body")
        flag = q.get("revoke_keys", "false")
        if flag not in ("true", "false"):
            raise ApiError(400, "invalid_request", "revoke_keys must be true or false", "revoke_keys")
        out = await credentials.delete(rt, name, revoke_keys=flag == "true")
        event(log, "credential deleted", credential=name, by=who.id)
        return KJSON(out)

    # -- audit ----------------------------------------------------------------------------

    @app.get("/v1/audit")
    async def query_audit(request: Request, who: AdminTokenRecord = Admin) -> Response:
        from keybrake.admin.audit import FILTERS

        params = _query(request, (*FILTERS, "since", "until", "cursor", "limit"), prefixes=("metadata.",))
        q = query_from(params)
        rows = await rt.store.query_audit(q.__class__(**{**q.__dict__, "limit": q.limit + 1}))
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        cursor = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more and rows else None
        return KJSON({"object": "list", "data": [render_row(r) for r in rows], "next_cursor": cursor})

    @app.get("/v1/audit/export")
    async def audit_export(request: Request, who: AdminTokenRecord = Admin) -> Response:
        from keybrake.admin.audit import FILTERS, FORMATS, export

        params = _query(request, (*FILTERS, "since", "until", "format"), prefixes=("metadata.",))
        fmt = params.pop("format", "csv")
        if fmt not in FORMATS:
            raise ApiError(400, "invalid_request", "format must be csv or jsonl", "format")
        q = query_from(params)
        event(log, "audit export", format=fmt, by=who.id)
        rows = export(rt.store, q, fmt)
        # The first page is read before the 200 is sent: an error there is an ordinary error
        # answer (503 past the report timeout). A later page's error cuts the body (no final chunk).
        first = await anext(rows, b"")

        async def body() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in rows:
                yield chunk

        return StreamingResponse(
            body(),
            media_type=FORMATS[fmt],
            headers={"content-disposition": f'attachment; filename="keybrake-audit.{fmt}"'},
        )

    @app.get("/v1/audit/{row_id}")
    async def get_audit(row_id: str, request: Request, who: AdminTokenRecord = Admin) -> Response:
        _query(request, ())  # takes none: an unknown one is a 400, never ignored
        row = await rt.store.get_audit(row_id)
        if row is None:
            raise not_found(f"audit row {row_id!r}")
        return KJSON(render_row(row))

    return app
