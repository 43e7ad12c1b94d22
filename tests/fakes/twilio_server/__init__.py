"""A small in-memory fake of Twilio's REST API 2010-04-01 on loopback, for tests.

It speaks the wire format twilio-python uses (HTTP Basic auth, form-encoded bodies with list
parameters as repeated keys such as ``MediaUrl=a&MediaUrl=b``, JSON answers) and answers in the
shapes of Twilio's OpenAPI spec (twilio/twilio-oai `spec/json/twilio_api_v2010.json`, twilio-oai
d50069b4): 201 on create, 200 on fetch, list and update, 204 with no body on delete, errors as
``{"code", "message", "more_info", "status"}``, a ``Twilio-Request-Id: RQ<32 hex>`` header and
``Content-Type: application/json`` on every answer.

Endpoints, all under ``/2010-04-01/Accounts/{AccountSid}``:

- ``.json``: fetch the Account. It carries ``auth_token``, as Twilio's does.
- ``/Messages.json`` (create, list) and ``/Messages/{Sid}.json`` (fetch, update, delete).
- ``/Calls.json`` (create, list) and ``/Calls/{Sid}.json`` (fetch, update, delete).
- ``/Keys.json`` (create, list) and ``/Keys/{Sid}.json`` (fetch, delete). A created key carries
  ``secret`` (only at creation) and authenticates at once; a deleted one no longer does.

Every resource also answers with ``.xml`` or no extension, as Twilio's 2010 API does (XML is its
default representation): the same operation, answered as ``application/xml`` in Twilio's XML
shape — ``<TwilioResponse>`` around ``<Message>``, ``<Call>``, ``<Account>`` or ``<Key>`` with
CamelCase element names (``<Sid>``, ``<DateCreated>``, ``<Price/>`` for null), lists as
``<Messages page="0" pagesize="50" …>`` with one element per item, errors as ``<RestException>``
with ``<Code>``, ``<Message>``, ``<MoreInfo>``, ``<Status>``. Forced answers (``fail_next``) are
always JSON.

Anything else is Twilio's 404 (code 20404); a known path with another method is 405 (20004).

Cost behaviour, as Twilio's (Twilio's docs): a message or call is created with
``price: null``; ``set_price()`` / ``price_all()`` make a later fetch show a negative decimal
string in ``price_unit`` (e.g. "-0.00790"). ``num_segments`` is counted as Twilio does: GSM-7
160 / 153 per segment (extension characters take two septets), otherwise UCS-2 70 / 67 UTF-16
units, never splitting a character; a message with media is one MMS.

Errors the fake raises itself (codes from Twilio's error dictionary and its real answers):

- 401 ``20003`` "Authenticate": no or bad Basic credentials, or a path naming an account other
  than the fake's ("using subaccount credentials to access master account" is a documented
  cause of 20003). Recorded before the check, with the decoded username and password.
- 404 ``20404``: unknown path or unknown SID. 405 ``20004``: method not allowed.
- Messages create: 400 ``21604`` no To, ``21603`` no From and no MessagingServiceSid,
  ``21602`` no Body, MediaUrl or ContentSid, ``21617`` Body over 1600 characters.
- Calls create: 400 ``21201`` no To, ``21213`` no From, ``21205`` none of Url, Twiml or
  ApplicationSid.
- 400 ``20001`` for a value the fake cannot take (non-integer TimeLimit or PageSize, a message
  update to a non-empty Body or to a Status other than "canceled").

Deliberately looser than Twilio: phone numbers, URLs and SIDs in parameters are not validated,
messages can be redacted, canceled or deleted in any state, DateSent / StartTime / EndTime list
filters are ignored, and standard API keys may use the Account and Keys endpoints.

Usage, async::

    async with FakeTwilio() as fake:
        ...fake.base_url...

or from synchronous tests::

    with FakeTwilioThread() as t:
        ...t.base_url, t.fake.requests, t.fake.set_price(sid)...
"""

from tests.fakes.twilio_server.server import FakeTwilio, FakeTwilioThread
from tests.fakes.twilio_server.wire import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
    encoding,
    error_body,
    new_sid,
    num_segments,
)

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY_SECRET",
    "DEFAULT_API_KEY_SID",
    "DEFAULT_AUTH_TOKEN",
    "FakeTwilio",
    "FakeTwilioThread",
    "encoding",
    "error_body",
    "new_sid",
    "num_segments",
]
