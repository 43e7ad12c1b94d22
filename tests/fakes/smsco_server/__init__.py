"""A fake of SMSCo, the fictional SMS API of the worked example in docs/vendors.md (a vendor
Keybrake knows only from its definition file), on loopback.

SMSCo's API as that page documents it:

- Auth: HTTP Basic, the account id (`AC…`) as user and the API token as password; anything else
  is 401 `{"error": {"code": "unauthorized", "message", "status": 401}}`.
- `POST /v1/messages`, JSON `{"from", "to": [E.164, …], "text"}` or a form with `to` repeated →
  201 `{"id": "msg_N", "status": "queued", "from", "to", "text", "price": "-0.0150",
  "price_unit": "USD"}`: $0.0075 per recipient (`RATE_USD`), stated as a negative balance. `to`
  must be a non-empty array of E.164 numbers and `from` and `text` strings (else 400
  `invalid_request`). An `Idempotency-Key` seen before replays the first answer.
- `GET /v1/messages/{id}` → the message (404 `not_found`).
- `POST /v1/lookups`, JSON `{"number"}` → 200 `{"number", "carrier": "Example Mobile"}`.
- `GET /v1/keys` → `{"keys": [{"id", "secret"}]}`; `POST /v1/keys` → 201 `{"id", "secret"}`.
- Every answer carries `X-Request-Id: req_N`.
"""

from tests.fakes.smsco_server.server import ACCOUNT, RATE_USD, TOKEN, FakeSmsco

__all__ = ["ACCOUNT", "RATE_USD", "TOKEN", "FakeSmsco"]
