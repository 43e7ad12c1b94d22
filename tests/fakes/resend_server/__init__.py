"""A small in-memory fake of the Resend API on loopback, for tests.

Paths, fields and status codes follow Resend's OpenAPI spec (resend/resend-openapi `resend.json`,
resend-openapi fd6f395f). The spec documents no error responses; error bodies and names follow
Resend's error reference (https://resend.com/docs/api-reference/errors):
``{"statusCode": <http status>, "name": "<error name>", "message": "…"}``.

Covered:

- ``POST /emails`` → 200 ``{"id"}``; ``from``, ``to`` (a string or 1–50 strings) and ``subject``
  are required (422 missing_required_field, "Missing `to` field."); malformed addresses, wrong
  types, ``template`` together with ``html``/``text``/``react`` and bad tags are 422
  validation_error; an attachment without ``content`` or ``path`` is 422 invalid_attachment.
- ``POST /emails/batch`` → 200 ``{"data": [{"id"}, …]}``: 1–100 emails, each checked as above,
  without ``attachments`` or ``scheduled_at`` (unsupported in batches). Strict by default (one
  bad email refuses the whole batch); ``x-batch-validation: permissive`` sends the valid ones
  and lists the others as ``"errors": [{"index", "message"}]``.
- ``GET /emails/{id}`` → the Email object (422 invalid_parameter if not a UUID, 404 not_found).
- ``POST /api-keys`` → 201 ``{"id", "token"}`` (422 missing_required_field / invalid_access);
  ``GET /api-keys`` → ``{"object": "list", "has_more", "data"}`` without tokens;
  ``DELETE /api-keys/{id}``. Created tokens authenticate too; a ``sending_access`` token may
  only send (401 restricted_api_key elsewhere).
- Auth: ``Authorization: Bearer <key>``; none → 401 missing_api_key, a wrong one → 403
  invalid_api_key. Checked before routing.
- ``Idempotency-Key`` (1–256 chars, else 400 invalid_idempotency_key) on the two send paths:
  the same key and JSON body within 24 h replays the first 200 answer and sends nothing; the
  same key with another body (or on the other path) is 409 invalid_idempotent_request; while
  the first request is still in flight (see ``hold()``) it is 409
  concurrent_idempotent_requests. Refused requests are not kept under the key.
- Unknown paths are 404 not_found; a method the spec does not list for a known path is 405
  method_not_allowed; one it lists but this fake does not implement is 404 with a message
  saying so.

Our choices where Resend documents nothing: a body that is not JSON, or a Content-Type other
than JSON, is 400 validation_error; messages the error reference does not give are ours.
Deliberately looser than Resend: sender domains are not checked, unknown fields are accepted
and stored, templates are not looked up.

Usage, async::

    async with FakeResend() as fake:
        ...fake.base_url...

or from synchronous tests::

    with FakeResendThread() as t:
        ...t.base_url, t.fake.requests, t.fake.emails...
"""

from tests.fakes.resend_server.server import FakeResend, FakeResendThread
from tests.fakes.resend_server.wire import DEFAULT_API_KEY, EMAIL_FIELDS, ERRORS, error_body

__all__ = ["DEFAULT_API_KEY", "EMAIL_FIELDS", "ERRORS", "FakeResend", "FakeResendThread", "error_body"]
