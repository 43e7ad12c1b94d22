"""What every admin router shares: the runtime and alerts of its app, the admin dependency, and
the error answers an operation declares (docs/api.md, conventions)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from keybrake.admin.auth import Principal, require_admin
from keybrake.admin.schemas import ErrorBody
from keybrake.jobs.alerts import Alerts
from keybrake.runtime import Runtime

ERROR_MEANINGS = {
    400: "`invalid_request`: malformed JSON, a body that is not an object, an unknown or repeated query parameter",
    401: "`admin_token_invalid` (no, unknown or revoked admin token) or `admin_token_required` (a vault key)",
    403: "`insufficient_scope`: the admin token's scope may not do this",
    404: "`not_found`: no such id or name",
    409: "`conflict`: the resource's state forbids the change (see docs/api.md)",
    413: "`body_too_large`: the body is larger than 1 MiB",
    422: "`validation_error`: a field is wrong; `field` names it",
    429: "`too_many_auth_failures`: more than 10 failed authentications a minute from this address",
    503: "`enforcement_unavailable`: the store is unavailable; nothing was changed",
}
_EVERY_CALL = (400, 401, 429, 503)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an authenticated operation: the errors every call may answer, plus `statuses`."""
    return {s: {"model": ErrorBody, "description": ERROR_MEANINGS[s]} for s in sorted({*_EVERY_CALL, *statuses})}


def json_request_body(model: str, *, required: bool) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON body a route reads itself (a merge patch, an optional body):
    `model` names one of `KeyModels.extra_models`, added to the components by `keybrake.admin.openapi`."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def runtime(request: Request) -> Runtime:
    """The Runtime the admin app was built for (`build_admin_app`)."""
    rt: Runtime = request.app.state.runtime
    return rt


def alerts(request: Request) -> Alerts | None:
    """The alert sender, when the app was built with one (alert events on revocation)."""
    sender: Alerts | None = request.app.state.alerts
    return sender


Admin = Depends(require_admin)
Rt = Depends(runtime)
__all__ = ["Admin", "Principal", "Rt", "alerts", "errors", "json_request_body", "runtime"]
