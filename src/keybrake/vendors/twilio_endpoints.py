"""Twilio's endpoint classes: parameters sent as arrays, parameters pricing and scope read,
the endpoints that create messages and calls, what is free and what is guarded
(docs/policy.md, guarded endpoints). Read by vendors/twilio.py."""

from __future__ import annotations

from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.vendors import twilio_voice
from keybrake.vendors.twilio_paths import API

# Form parameters Twilio's spec types as arrays: sent as repeated keys (`MediaUrl=a&MediaUrl=b`).
REPEATABLE = frozenset(
    {
        "MediaUrl",
        "StatusCallbackEvent",
        "RecordingStatusCallbackEvent",
        "ConferenceStatusCallbackEvent",
        "ConferenceRecordingStatusCallbackEvent",
        "PersistentAction",
        "Permissions",
    }
)
# Parameters Keybrake's pricing, scope or policy reads. Twilio has no bracket syntax and its
# names are case-sensitive: `To[]`, `to` or ` To` next to (or instead of) `To` are refused.
ENFORCED = frozenset(
    {
        "To",
        "From",
        "Body",
        "MediaUrl",
        "ContentSid",
        "ContentVariables",
        "TimeLimit",
        "Twiml",
        "Url",
        "FallbackUrl",
        "ApplicationSid",
        *twilio_voice.PARAMS,
    }
)


def _p(text: str, *, casefold: bool = False) -> EndpointPattern:
    return parse_pattern(text, casefold=casefold)


MESSAGES_CREATE = _p(f"POST /{API}/Accounts/*/Messages.json")
CALLS_CREATE = _p(f"POST /{API}/Accounts/*/Calls.json")
PARTICIPANTS_CREATE = _p(f"POST /{API}/Accounts/*/Conferences/*/Participants.json")
# Endpoints whose exact spelling decides a price or a destination check: after the extension is
# mapped to `.json`, a case variant of one of them is refused (`base.check_path_spelling`).
MONEY_MOVING = (MESSAGES_CREATE, CALLS_CREATE, PARTICIPANTS_CREATE, *twilio_voice.PATTERNS)
# Endpoints that move no money. Everything else not priced above is unpriceable — including a
# live call's update, which can redirect it to new TwiML that dials anyone.
FREE = tuple(
    _p(t)
    for t in (
        "GET /**",
        f"POST /{API}/Accounts/*/Messages/*.json",  # redact a body or cancel a scheduled message
        f"DELETE /{API}/Accounts/*/Calls/*.json",
        f"DELETE /{API}/Accounts/*/Recordings/*.json",
        f"DELETE /{API}/Accounts/*/Calls/*/Recordings/*.json",
        f"DELETE /{API}/Accounts/*/Messages/*/Media/*.json",
        f"DELETE /{API}/Accounts/*/Transcriptions/*.json",
        # Guarded (docs/policy.md, guarded endpoints), but they move no money once a key may call them at all.
        f"* /{API}/Accounts/*/Keys.json",
        f"* /{API}/Accounts/*/Keys/*",
        f"* /{API}/Accounts/*/SigningKeys.json",
        f"* /{API}/Accounts/*/SigningKeys/*",
        f"POST /{API}/Accounts/*/Applications.json",
        f"POST|DELETE /{API}/Accounts/*/Applications/*.json",
    )
)
# docs/policy.md, guarded endpoints: endpoints that return or mint secrets, buy numbers or change the account.
GUARDED = tuple(
    _p(t, casefold=True)
    for t in (
        f"* /{API}/Accounts.json",
        f"* /{API}/Accounts/*.json",
        f"* /{API}/Accounts/*/Keys.json",
        f"* /{API}/Accounts/*/Keys/*",
        f"* /{API}/Accounts/*/SigningKeys.json",
        f"* /{API}/Accounts/*/SigningKeys/*",
        f"POST /{API}/Accounts/*/IncomingPhoneNumbers*",
        f"POST|DELETE /{API}/Accounts/*/IncomingPhoneNumbers/**",
        f"POST /{API}/Accounts/*/Applications*",
        f"POST /{API}/Accounts/*/Applications/**",
        f"* /{API}/Accounts/*/SIP/**",
        f"DELETE /{API}/Accounts/*/Messages/*",
    )
)
