"""How many values a body may hold: a bound on the work any one body can cost.

Reading a body's values — parsing its JSON, serialising it again for a fingerprint — is CPU in
proportion to how many values it holds, and the C parts of Python's `json` (a `loads` of an
array of arrays, a `dumps(sort_keys=True)`) run as one call that holds the interpreter lock:
no thread can make such a call share time with the event loop. A legal 42 MB body of millions
of tiny values held every other key's requests 1–2.7 s that way (third red team, 2026-12-02).
So a request body is refused before any of that runs when it could hold more than
MAX_BODY_VALUES values (`decide.parse`; the MCP endpoint before the MCP SDK's parse). A vendor
answer is always read whole (its secret-bearing fields are redacted from the document), within
KEYBRAKE_MAX_RESPONSE_BYTES.

The count is an upper bound read in C in a few ms: JSON separators and openers (`,` `[` `{`,
also those inside strings) or form fields (`&`). Real calls hold a few thousand values at most
(a Resend batch of 100 emails, SendGrid's 1,000 personalizations): the bound is far above them.
"""

from __future__ import annotations

# At most this many values (bounded above as `values_bound` counts them) in one request body:
# the C json calls over such a body take ~0.1–0.2 s at worst.
MAX_BODY_VALUES = 500_000
TOO_MANY_VALUES = (
    f"The request body may hold more than {MAX_BODY_VALUES:,} values (counted as its `,` `[` `{{` `&` "
    "characters); nothing was sent. Send fewer values in one call."
)


def values_bound(body: bytes) -> int:
    """An upper bound on the values `body` holds as JSON or as a form: the count of `,`, `[`,
    `{` and `&` bytes plus one (separators inside strings count too). Pure, C-speed."""
    return body.count(b",") + body.count(b"[") + body.count(b"{") + body.count(b"&") + 1


def too_many_values(body: bytes) -> bool:
    """Whether `body` may hold more than MAX_BODY_VALUES values (`values_bound`). A body shorter
    than MAX_BODY_VALUES bytes cannot, and is not counted."""
    return len(body) >= MAX_BODY_VALUES and values_bound(body) > MAX_BODY_VALUES
