"""A small in-memory fake of the SendGrid v3 API on loopback, for tests.

Paths, fields, status codes and error bodies follow SendGrid's OpenAPI documents
(twilio/sendgrid-oai ``spec/json/tsg_mail_v3.json``, ``tsg_api_keys_v3.json``,
``tsg_webhooks_v3.json``) and the requests sendgrid-python 6.12 (python-http-client 3.3) sends.

Covered:

- Auth: ``Authorization: Bearer <API key>`` (the default key or one created below); none → 401
  ``{"errors": [{"message": "authorization required", "field": null}]}``, a wrong one → 401
  "The provided authorization grant is invalid, expired, or revoked". Checked before routing.
- ``POST /v3/mail/send`` → 202 with no body and an ``X-Message-Id`` header. Checked as the spec
  says: 1–1000 ``personalizations``, each with a non-empty ``to``; every ``to``/``cc``/``bcc``
  item an object with a valid ``email``; an address at most once per personalization across
  ``to``, ``cc`` and ``bcc``; at most 1000 recipients per request; ``from.email`` (and any
  ``personalizations[].from.email``) valid; not both ``reply_to`` and ``reply_to_list``; a
  ``subject`` and ``content`` unless ``template_id`` is given. Refusals are 400 with ``field`` and
  ``help`` naming what is wrong.
- ``GET|POST /v3/api_keys`` (a created key is answered once with its secret ``api_key`` and
  authenticates too); ``GET|PATCH /v3/user/webhooks/event/settings``; ``GET /v3/scopes``.
- A POST/PATCH whose Content-Type is not JSON is 415; a body that is not JSON is 400.
  Unknown paths are 404 "not found", a method a known path does not take 405.

Our choices where SendGrid documents nothing: the 415 and invalid-JSON messages.
Deliberately looser than SendGrid: sender identities are not checked, templates are not looked
up, ``send_at``, attachments, categories and settings are accepted as sent.

Usage: ``with FakeSendGridThread() as t: ...t.base_url, t.fake.mails...``
"""

from tests.fakes.sendgrid_server.server import FakeSendGrid, FakeSendGridThread
from tests.fakes.sendgrid_server.wire import DEFAULT_API_KEY, MAX_RECIPIENTS, error_body

__all__ = ["DEFAULT_API_KEY", "MAX_RECIPIENTS", "FakeSendGrid", "FakeSendGridThread", "error_body"]
