"""A Resend sandbox: the Emails API in memory, answering in the shapes of Resend's API reference
(https://resend.com/docs/api-reference/emails/send-email): `Authorization: Bearer re_…`, a JSON
body (`from`, `to` — one address or a list of at most 50 — `subject`, optional `cc`, `bcc`,
`reply_to`, `html`, `text`), `200 {"id": "<uuid>"}`, the Email object at `GET /emails/{id}`,
`Idempotency-Key` replays, and Resend's error body `{"statusCode", "name", "message"}` with the
statuses of its error reference (https://resend.com/docs/api-reference/errors): 401
`missing_api_key`, 403 `invalid_api_key`, 422 `missing_required_field` / `validation_error`, 404
`not_found`, 409 `invalid_idempotent_request`.

Resend bills a plan, not each email: `EMAIL_USD` is the Pro plan's price per email (USD 20 a
month for 50,000 emails), and each recipient counts as one email toward the quota.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from keybrake.demo.sandbox import Sandbox

EMAIL_USD = Decimal(20) / Decimal(50_000)  # $0.0004 per email sent (one per recipient)
MAX_RECIPIENTS = 50
_ADDRESS = re.compile(r"[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\"]+")
_NAMED = re.compile(r"\s*(?:\"[^\"]*\"|[^<>\"]*?)\s*<(?P<address>[^<>]*)>\s*")  # `"Acme, Inc." <a@b.c>` too
_BAD_ADDRESS = (
    "Invalid `{}` field. The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"statusCode": status, "name": name, "message": message}, status=status)


class _Refused(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message


def bare_address(address: str) -> str:
    """`Acme <billing@acme.test>` → `billing@acme.test` (an address without a name is unchanged)."""
    m = _NAMED.fullmatch(address)
    return (m.group("address") if m else address).strip()


def _addresses(doc: dict[str, Any], field: str) -> list[str]:
    value = doc.get(field)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _Refused(422, "validation_error", f"The `{field}` field must be a `string` or an array of strings.")
    if len(values) > MAX_RECIPIENTS:
        raise _Refused(422, "validation_error", f"The `{field}` field holds at most {MAX_RECIPIENTS} addresses.")
    if not all(_ADDRESS.fullmatch(bare_address(v)) for v in values):
        raise _Refused(422, "validation_error", _BAD_ADDRESS.format(field))
    return list(values)


class ResendSandbox(Sandbox):
    """Resend in memory for one account. `api_key` (`re_` + 32 letters and digits): the key it
    accepts. `emails`: every Email object it accepted, by id, in order."""

    name = "resend"

    def __init__(self) -> None:
        super().__init__()
        self.api_key = "re_" + secrets.token_hex(16)
        self.emails: dict[str, dict[str, Any]] = {}
        self._replays: dict[str, tuple[str, dict[str, Any]]] = {}  # Idempotency-Key → (body, answer)

    @staticmethod
    def recipients(email: dict[str, Any]) -> int:
        """The distinct addresses an email went to over `to`, `cc` and `bcc` (each one an email billed)."""
        return len({bare_address(a).lower() for f in ("to", "cc", "bcc") for a in email.get(f) or []})

    @property
    def sent(self) -> int:
        """Emails delivered: one per recipient of every email accepted."""
        return sum(self.recipients(e) for e in self.emails.values())

    @property
    def billed_usd(self) -> Decimal:
        """What the emails accepted use of the plan, in USD: EMAIL_USD per recipient."""
        return EMAIL_USD * self.sent

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/emails", self._send)
        app.router.add_get("/emails/{id}", self._fetch)

    def _refusal(self, request: web.Request) -> web.Response | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return _error(401, "missing_api_key", "Missing API key in the authorization header.")
        if key != self.api_key:
            return _error(403, "invalid_api_key", "API key is invalid.")
        return None

    async def _send(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        body = (await request.read()).decode("utf-8", "replace")
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and idem in self._replays:
            sent, answer = self._replays[idem]
            if sent != body:
                return _error(409, "invalid_idempotent_request",
                              "Same idempotency key used with a different request payload.")  # fmt: skip
            return web.json_response(answer)
        try:
            email = self._email(request.content_type, body)
        except _Refused as exc:
            return _error(exc.status, exc.name, exc.message)
        self.emails[email["id"]] = email
        answer = {"id": email["id"]}
        if idem is not None:
            self._replays[idem] = (body, answer)
        return web.json_response(answer)

    def _email(self, content_type: str, body: str) -> dict[str, Any]:
        if content_type != "application/json":
            raise _Refused(400, "validation_error", "Invalid `Content-Type` header. Expected `application/json`.")
        try:
            doc = json.loads(body)
        except ValueError:
            raise _Refused(400, "validation_error", "The request body is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise _Refused(422, "validation_error", "The request body must be a JSON object.")
        for field in ("from", "to", "subject"):
            if doc.get(field) in (None, "", []):
                raise _Refused(422, "missing_required_field", f"Missing `{field}` field.")
        if not isinstance(doc["from"], str) or not _ADDRESS.fullmatch(bare_address(doc["from"])):
            raise _Refused(422, "validation_error", _BAD_ADDRESS.format("from"))
        if not isinstance(doc["subject"], str):
            raise _Refused(422, "validation_error", "The `subject` field must be a `string`.")
        to, cc, bcc, reply_to = (_addresses(doc, f) for f in ("to", "cc", "bcc", "reply_to"))
        for field in ("html", "text"):
            if doc.get(field) is not None and not isinstance(doc[field], str):
                raise _Refused(422, "validation_error", f"The `{field}` field must be a `string`.")
        created = datetime.now(UTC)
        return {
            "object": "email", "id": str(uuid.uuid4()), "to": to, "from": doc["from"],
            "created_at": f"{created:%Y-%m-%d %H:%M:%S.%f}+00", "subject": doc["subject"],
            "html": doc.get("html"), "text": doc.get("text"), "bcc": bcc or None, "cc": cc or None,
            "reply_to": reply_to or None, "last_event": "delivered", "scheduled_at": None,
        }  # fmt: skip

    async def _fetch(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        email = self.emails.get(request.match_info["id"])
        if email is None:
            return _error(404, "not_found", "Email not found")
        return web.json_response(email)
