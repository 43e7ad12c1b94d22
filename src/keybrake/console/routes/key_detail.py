"""Key detail (`/console/keys/{key_id}`): the policy, usage per window, the JSON merge patch form
and the live audit tail (htmx: the section reloads itself every 2 s from `/tail`).

The patch goes through `keybrake.admin.keys.patch`, so its validation is the API's
(`PATCH /v1/keys/{id}`); the tail is the key's newest audit rows on the audit index of the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Annotated, Any

import simplejson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin import keys
from keybrake.admin.errors import ApiError
from keybrake.console.format import usd
from keybrake.console.routes.keys import bars
from keybrake.console.web import Form, Operator, notice_of, operator, page, posted, runtime, see_other
from keybrake.core.policy import USD_FIELDS
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.store.base import AuditQuery

router = APIRouter(include_in_schema=False)
log = logging.getLogger("keybrake.console")
TAIL = 20  # audit rows the live tail shows
MAX_PATCH = 64 * 1024  # characters of a patch document


def patch_example(key: dict[str, Any]) -> str:
    """A merge patch document to start from: the key's policy fields that are set, as JSON."""
    policy = {k: v for k, v in key["policy"].items() if v is not None}
    return str(simplejson.dumps({"policy": policy}, use_decimal=True, indent=2, sort_keys=True))


def policy_rows(key: dict[str, Any], fields: Collection[str] | None) -> list[tuple[str, str, bool]]:
    """Every policy field of a rendered key that its vendor supports (`fields`; None: all) as
    (name, text, set): USD as `$1.00`, lists joined, objects as JSON, `not set` when unset."""
    out = []
    for name, value in key["policy"].items():
        if fields is not None and name not in fields and value is None:
            continue
        if value is None:
            text = "not set"
        elif name in USD_FIELDS:
            text = usd(value)
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) if value else "(none)"
        elif isinstance(value, dict):
            text = json.dumps(value, sort_keys=True, default=str)
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        else:
            text = str(value)
        out.append((name, text, value is not None))
    return out


async def tail_rows(rt: Runtime, key_id: str) -> list[dict[str, Any]]:
    """The key's newest audit rows, newest first (ix_audit_key, LIMIT `TAIL`); money in µUSD, ts Unix ms."""
    return await rt.audit_store.query_audit(AuditQuery(key_id=key_id, limit=TAIL))


async def _detail(request: Request, op: Operator, key_id: str, status: int = 200, **ctx: Any) -> Response:
    rt = runtime(request)
    key = await keys.render(rt, await keys.get_record(rt, key_id))
    rows = await tail_rows(rt, key_id)
    fields = rt.vendors[key["vendor"]].policy_fields if key["vendor"] in rt.vendors else None
    # The run the key was issued for (its agent_run_id, else its metadata's, as approvals read it), then the runs
    # its latest calls named (X-Agent-Run-Id).
    named = [key.get("agent_run_id") or key["metadata"].get("agent_run_id"), *(r["agent_run_id"] for r in rows)]
    runs = list(dict.fromkeys(str(r) for r in named if r))
    ctx.setdefault("patch_text", patch_example(key))
    ctx.setdefault("notice", notice_of(request, op))
    return page(request, "key_detail.html", op, status=status, title=f"Key {key_id}", key=key, bars=bars(key),
                policy=policy_rows(key, fields), rows=rows, runs=runs, **ctx)  # fmt: skip


@router.get("/console/keys/{key_id}")
async def key_page(request: Request, key_id: str, op: Annotated[Operator, Depends(operator)]) -> Response:
    """One key: policy, usage per window with reset times, the patch form, the live audit tail."""
    return await _detail(request, op, key_id)


@router.get("/console/keys/{key_id}/tail")
async def key_tail(request: Request, key_id: str, op: Annotated[Operator, Depends(operator)]) -> Response:
    """The live part alone — usage per window and the latest calls (htmx swaps it in every 2 s).
    Without a session no row is sent: htmx's request is told to take the page to sign-in, any
    other GET is redirected there."""
    rt = runtime(request)
    key = await keys.render(rt, await keys.get_record(rt, key_id))  # 404 for an unknown key
    rows = await tail_rows(rt, key_id)
    return page(request, "key_live.html", op, key=key, bars=bars(key), rows=rows)


@router.post("/console/keys/{key_id}/patch")
async def key_patch(request: Request, key_id: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Apply the JSON merge patch in `patch` through the API's validation; a refusal is shown on
    the page (field and message) with the text kept."""
    rt = runtime(request)
    text = form.fields.get("patch", "")
    problem, status = "", 422
    if len(text) > MAX_PATCH:
        problem, status = f"The patch is longer than {MAX_PATCH} characters.", 413
    else:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            problem, status = f"The patch is not valid JSON: {exc}", 400
    if not problem:
        try:
            out = await keys.patch(rt, key_id, doc)
        except ApiError as exc:
            if exc.status == 404:
                raise
            problem, status = f"{exc.field}: {exc.message}" if exc.field else exc.message, exc.status
    if problem:
        return await _detail(request, form.op, key_id, status=status, problem=problem, patch_text=text)
    event(log, "key changed", key_id=key_id, by=form.op.principal.id)
    note = "Key changed." + "".join(f" Note: {w}." for w in out["warnings"])
    return see_other(f"/console/keys/{key_id}", form.op, notice=note)
