"""A small in-memory fake of the Postmark API on loopback, for tests.

Postmark publishes no OpenAPI document; paths, fields, status codes and error codes follow its
API reference (https://postmarkapp.com/developer/api/overview, …/email-api, …/templates-api,
…/server-api, …/webhooks-api), and the request shapes postmarker 1.0 sends.

Covered:

- Auth: ``X-Postmark-Server-Token`` (``POSTMARK_API_TEST`` accepted too) on server endpoints,
  ``X-Postmark-Account-Token`` on account ones (``/servers``, ``/domains``, ``/senders``); the
  value is compared case-insensitively, as Postmark documents. Missing or wrong → 401
  ``{"ErrorCode": 10, "Message": …}``. Checked after routing (an unknown path is 404).
- ``POST /email`` and ``POST /email/withTemplate`` → 200 ``{"To", "SubmittedAt", "MessageID",
  "ErrorCode": 0, "Message": "OK"}``. ``From`` is required; ``To``/``Cc``/``Bcc`` are strings of
  comma-separated addresses, display names allowed (``"Ana <ana@example.com>, bo@example.com"``),
  at most 50 recipients in all; a body (``HtmlBody``/``TextBody``) or, with a template,
  ``TemplateId``/``TemplateAlias`` and a ``TemplateModel`` object. Refusals are 422 with
  ErrorCode 300 (1101 for a missing template reference).
- ``POST /email/batch`` (an array) and ``POST /email/batchWithTemplates`` (``{"Messages": […]}``):
  at most 500 messages (422 ErrorCode 410); each is checked on its own and the answer is 200 with
  one result per message — ErrorCode 0 for a sent one, Postmark's error for a refused one.
- JSON is read as Postmark's .NET reader does: keys in any letter case (``to`` is ``To``); of two
  keys differing only by case the last wins. A POST/PUT without ``Content-Type:
  application/json`` is 422 ErrorCode 409; a body that is not JSON is 422 ErrorCode 402.
  Paths are matched case-insensitively and a trailing slash is ignored (postmarker posts to
  ``/email/withTemplate/``).
- ``GET /messages/outbound/{id}/details``; ``GET|PUT /server`` (the server object, with its
  ``ApiTokens``); ``GET|POST /webhooks`` (webhooks carry ``HttpAuth`` with a password).

Our choices where Postmark documents nothing: messages not given in its docs are ours; an
unknown path is 404 and a method a known path does not take is 405, each with ErrorCode 0.
Deliberately looser than Postmark: sender signatures are not checked, templates are not looked
up, suppressions (ErrorCode 406) are not kept.

Usage: ``with FakePostmarkThread() as t: ...t.base_url, t.fake.messages...``
"""

from tests.fakes.postmark_server.server import FakePostmark, FakePostmarkThread
from tests.fakes.postmark_server.wire import (
    DEFAULT_ACCOUNT_TOKEN,
    DEFAULT_SERVER_TOKEN,
    ERRORS,
    MAX_BATCH,
    MAX_RECIPIENTS,
    error_body,
)

__all__ = [
    "DEFAULT_ACCOUNT_TOKEN",
    "DEFAULT_SERVER_TOKEN",
    "ERRORS",
    "MAX_BATCH",
    "MAX_RECIPIENTS",
    "FakePostmark",
    "FakePostmarkThread",
    "error_body",
]
