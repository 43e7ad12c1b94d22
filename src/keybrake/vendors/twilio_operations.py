"""Every operation of Twilio's REST API 2010-04-01, as its OpenAPI spec lists them (generated).

Source: twilio/twilio-oai, commit d50069b44ea8cd23141385bdb6db48f16ff75bb5,
spec/json/twilio_api_v2010.json — path templates with `{Sid}` parameters as `*`, and the methods
each accepts. A Twilio request that is none of these (another API version, a deprecated resource
such as `SMS/Messages`, PUT) cannot be classified, so it is refused before anything else is
checked (docs/sdk-twilio.md, every spelling is one operation).
"""

from __future__ import annotations

from keybrake.core.patterns import EndpointPattern, parse_pattern

OPERATIONS: tuple[str, ...] = (
    "GET|POST /2010-04-01/Accounts.json",
    "GET|POST /2010-04-01/Accounts/*.json",
    "GET|POST /2010-04-01/Accounts/*/Addresses.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Addresses/*.json",
    "GET|POST /2010-04-01/Accounts/*/Applications.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Applications/*.json",
    "GET /2010-04-01/Accounts/*/AuthorizedConnectApps/*.json",
    "GET /2010-04-01/Accounts/*/AuthorizedConnectApps.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/Local.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/MachineToMachine.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/Mobile.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/National.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/SharedCost.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/TollFree.json",
    "GET /2010-04-01/Accounts/*/AvailablePhoneNumbers/*/Voip.json",
    "GET /2010-04-01/Accounts/*/Balance.json",
    "GET|POST /2010-04-01/Accounts/*/Calls.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Calls/*.json",
    "GET /2010-04-01/Accounts/*/Calls/*/Events.json",
    "GET /2010-04-01/Accounts/*/Calls/*/Notifications/*.json",
    "GET /2010-04-01/Accounts/*/Calls/*/Notifications.json",
    "GET|POST /2010-04-01/Accounts/*/Calls/*/Recordings.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Calls/*/Recordings/*.json",
    "GET|POST /2010-04-01/Accounts/*/Conferences/*.json",
    "GET /2010-04-01/Accounts/*/Conferences.json",
    "GET /2010-04-01/Accounts/*/Conferences/*/Recordings.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Conferences/*/Recordings/*.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/ConnectApps/*.json",
    "GET /2010-04-01/Accounts/*/ConnectApps.json",
    "GET /2010-04-01/Accounts/*/Addresses/*/DependentPhoneNumbers.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/IncomingPhoneNumbers/*.json",
    "GET|POST /2010-04-01/Accounts/*/IncomingPhoneNumbers.json",
    "DELETE|GET /2010-04-01/Accounts/*/IncomingPhoneNumbers/*/AssignedAddOns/*.json",
    "GET|POST /2010-04-01/Accounts/*/IncomingPhoneNumbers/*/AssignedAddOns.json",
    "GET /2010-04-01/Accounts/*/IncomingPhoneNumbers/*/AssignedAddOns/*/Extensions/*.json",
    "GET /2010-04-01/Accounts/*/IncomingPhoneNumbers/*/AssignedAddOns/*/Extensions.json",
    "GET|POST /2010-04-01/Accounts/*/IncomingPhoneNumbers/Local.json",
    "GET|POST /2010-04-01/Accounts/*/IncomingPhoneNumbers/Mobile.json",
    "GET|POST /2010-04-01/Accounts/*/IncomingPhoneNumbers/TollFree.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Keys/*.json",
    "GET|POST /2010-04-01/Accounts/*/Keys.json",
    "DELETE|GET /2010-04-01/Accounts/*/Messages/*/Media/*.json",
    "GET /2010-04-01/Accounts/*/Messages/*/Media.json",
    "GET|POST /2010-04-01/Accounts/*/Queues/*/Members/*.json",
    "GET /2010-04-01/Accounts/*/Queues/*/Members.json",
    "GET|POST /2010-04-01/Accounts/*/Messages.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Messages/*.json",
    "POST /2010-04-01/Accounts/*/Messages/*/Feedback.json",
    "GET|POST /2010-04-01/Accounts/*/SigningKeys.json",
    "GET /2010-04-01/Accounts/*/Notifications/*.json",
    "GET /2010-04-01/Accounts/*/Notifications.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/OutgoingCallerIds/*.json",
    "GET|POST /2010-04-01/Accounts/*/OutgoingCallerIds.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Conferences/*/Participants/*.json",
    "GET|POST /2010-04-01/Accounts/*/Conferences/*/Participants.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Payments.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Payments/*.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Queues/*.json",
    "GET|POST /2010-04-01/Accounts/*/Queues.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Transcriptions.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Transcriptions/*.json",
    "DELETE|GET /2010-04-01/Accounts/*/Recordings/*.json",
    "GET /2010-04-01/Accounts/*/Recordings.json",
    "DELETE|GET /2010-04-01/Accounts/*/Recordings/*/AddOnResults/*.json",
    "GET /2010-04-01/Accounts/*/Recordings/*/AddOnResults.json",
    "DELETE|GET /2010-04-01/Accounts/*/Recordings/*/AddOnResults/*/Payloads/*.json",
    "GET /2010-04-01/Accounts/*/Recordings/*/AddOnResults/*/Payloads.json",
    "GET /2010-04-01/Accounts/*/Recordings/*/AddOnResults/*/Payloads/*/Data.json",
    "DELETE|GET /2010-04-01/Accounts/*/Recordings/*/Transcriptions/*.json",
    "GET /2010-04-01/Accounts/*/Recordings/*/Transcriptions.json",
    "GET|POST /2010-04-01/Accounts/*/SMS/ShortCodes/*.json",
    "GET /2010-04-01/Accounts/*/SMS/ShortCodes.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/SigningKeys/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/Domains/*/Auth/Calls/CredentialListMappings.json",
    "DELETE|GET /2010-04-01/Accounts/*/SIP/Domains/*/Auth/Calls/CredentialListMappings/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/Domains/*/Auth/Calls/IpAccessControlListMappings.json",
    "DELETE|GET /2010-04-01/Accounts/*/SIP/Domains/*/Auth/Calls/IpAccessControlListMappings/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/Domains/*/Auth/Registrations/CredentialListMappings.json",
    "DELETE|GET /2010-04-01/Accounts/*/SIP/Domains/*/Auth/Registrations/CredentialListMappings/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/CredentialLists/*/Credentials.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/SIP/CredentialLists/*/Credentials/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/CredentialLists.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/SIP/CredentialLists/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/Domains/*/CredentialListMappings.json",
    "DELETE|GET /2010-04-01/Accounts/*/SIP/Domains/*/CredentialListMappings/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/Domains.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/SIP/Domains/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/IpAccessControlLists.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/SIP/IpAccessControlLists/*.json",
    "DELETE|GET /2010-04-01/Accounts/*/SIP/Domains/*/IpAccessControlListMappings/*.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/Domains/*/IpAccessControlListMappings.json",
    "GET|POST /2010-04-01/Accounts/*/SIP/IpAccessControlLists/*/IpAddresses.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/SIP/IpAccessControlLists/*/IpAddresses/*.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Siprec.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Siprec/*.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Streams.json",
    "POST /2010-04-01/Accounts/*/Calls/*/Streams/*.json",
    "POST /2010-04-01/Accounts/*/Tokens.json",
    "DELETE|GET /2010-04-01/Accounts/*/Transcriptions/*.json",
    "GET /2010-04-01/Accounts/*/Transcriptions.json",
    "GET /2010-04-01/Accounts/*/Usage/Records.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/AllTime.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/Daily.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/LastMonth.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/Monthly.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/ThisMonth.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/Today.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/Yearly.json",
    "GET /2010-04-01/Accounts/*/Usage/Records/Yesterday.json",
    "DELETE|GET|POST /2010-04-01/Accounts/*/Usage/Triggers/*.json",
    "GET|POST /2010-04-01/Accounts/*/Usage/Triggers.json",
    "POST /2010-04-01/Accounts/*/Calls/*/UserDefinedMessages.json",
    "POST /2010-04-01/Accounts/*/Calls/*/UserDefinedMessageSubscriptions.json",
    "DELETE /2010-04-01/Accounts/*/Calls/*/UserDefinedMessageSubscriptions/*.json",
)


def _by_length() -> dict[int, tuple[EndpointPattern, ...]]:
    grouped: dict[int, list[EndpointPattern]] = {}
    for text in OPERATIONS:
        pattern = parse_pattern(text)
        grouped.setdefault(len(pattern.segments), []).append(pattern)
    return {n: tuple(ps) for n, ps in grouped.items()}


_BY_LENGTH = _by_length()


def documented(method: str, path: tuple[str, ...]) -> bool:
    """Whether `METHOD /path` (its `.json` spelling, without a leading `/`) is a documented operation."""
    return any(p.matches(method, path) for p in _BY_LENGTH.get(len(path), ()))
