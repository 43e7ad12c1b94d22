"""Credentials (`/console/credentials`): the vendor secrets keys are bound to (docs/api.md,
credentials).

Lists every credential (name, vendor, base URL, created / rotated, the secret's hint as the API
shows it, and how many active keys use it: one indexed count each). Rotating is a page of its own
that names the credential and its keys and takes the new secret in a password field; it goes
through `keybrake.admin.credentials.rotate`. The secret is never echoed back: not on a refusal
(the field comes back empty), not in a redirect, not in a log line. Deleting asks for a
confirmation naming the active keys, with the API's `revoke_keys` option.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from keybrake.admin import credentials
from keybrake.admin.errors import ApiError
from keybrake.admin.models import RotateIn
from keybrake.console.ops_forms import optional, validated
from keybrake.console.web import Form, Operator, notice_of, operator, page, posted, runtime, see_other
from keybrake.logs import event

log = logging.getLogger("keybrake.console")
router = APIRouter(include_in_schema=False)
PATH = "/console/credentials"
# The parts of a Twilio secret (docs/vendors.md): an auth token, or an API key and its secret.
TWILIO_PARTS = ("account_sid", "auth_token", "api_key_sid", "api_key_secret")


@router.get(PATH)
async def credentials_page(request: Request, op: Annotated[Operator, Depends(operator)]) -> Response:
    """Every credential, with its active keys."""
    rt = runtime(request)
    rows = [await credentials.render(rt, c) for c in await rt.credential_store.list_credentials()]
    notice = notice_of(request, op)
    return page(request, "credentials.html", op, title="Credentials", credentials=rows, notice=notice)


@router.get(PATH + "/{name}/rotate")
async def rotate_page(request: Request, name: str, op: Annotated[Operator, Depends(operator)]) -> Response:
    """The rotation form: names the credential and how many active keys switch to the new secret."""
    return await _rotate_form(request, op, name)


async def _rotate_form(
    request: Request, op: Operator, name: str, *, status: int = 200, problem: str = "", base_url: str = ""
) -> Response:
    rt = runtime(request)
    cred = await credentials.render(rt, await credentials.get_record(rt, name))
    return page(
        request,
        "credentials_rotate.html",
        op,
        status=status,
        title=f"Rotate credential {name}",
        cred=cred,
        problem=problem,
        base_url=base_url,
    )


def secret_of(vendor: str, form: Form) -> str | dict[str, str]:
    """The secret the form carries: Twilio's parts as the API's object, any other vendor's as text.
    Never logged, never rendered."""
    if vendor == "twilio":
        return {part: form.get(part) for part in TWILIO_PARTS if form.get(part)}
    return form.get("secret")  # stripped: a secret pasted with a trailing newline is still the secret


@router.post(PATH + "/{name}/rotate")
async def rotate(request: Request, name: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Replace the secret (and, when given, the base URL). A refusal shows the form again with the
    API's message and the base URL kept; the secret field is always empty again."""
    rt = runtime(request)
    cred = await credentials.get_record(rt, name)
    base_url = form.get("base_url")
    try:
        if form.get("confirm") != "yes":
            raise ApiError(422, "validation_error", "confirm: press Rotate to confirm; nothing was changed")
        doc: dict[str, Any] = {"secret": secret_of(cred.vendor, form), "base_url": optional(base_url)}
        out = await credentials.rotate(rt, name, validated(RotateIn, doc))
    except ApiError as exc:
        return await _rotate_form(request, form.op, name, status=exc.status, problem=exc.message, base_url=base_url)
    event(log, "credential rotated", credential=name, by=form.op.principal.id)
    keys = out["active_keys"]
    return see_other(
        PATH,
        form.op,
        notice=f"Rotated credential {name}: its {keys} active keys use the new secret from their next request.",
    )


@router.post(PATH + "/{name}/delete")
async def delete(request: Request, name: str, form: Annotated[Form, Depends(posted)]) -> Response:
    """Without `confirm=yes`: the confirmation, naming the credential and its active keys (with
    the `revoke_keys` choice). With it: delete; the API's 409 (active keys, not revoked) is shown
    on the confirmation."""
    rt = runtime(request)
    cred = await credentials.render(rt, await credentials.get_record(rt, name))
    revoke = form.get("revoke_keys") == "yes"
    if form.get("confirm") == "yes":
        try:
            out = await credentials.delete(rt, name, revoke_keys=revoke)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return _delete_form(request, form.op, cred, status=409, problem=exc.message, revoke=revoke)
        event(log, "credential deleted", credential=name, by=form.op.principal.id)
        revoked = f"; {out['revoked_keys']} keys revoked" if out["revoked_keys"] else ""
        return see_other(PATH, form.op, notice=f"Deleted credential {name}{revoked}.")
    return _delete_form(request, form.op, cred)


def _delete_form(
    request: Request, op: Operator, cred: dict[str, Any], *, status: int = 200, problem: str = "", revoke: bool = False
) -> Response:
    title = f"Delete credential {cred['name']}"
    return page(
        request, "credentials_delete.html", op, status=status, title=title, cred=cred, problem=problem, revoke=revoke
    )
