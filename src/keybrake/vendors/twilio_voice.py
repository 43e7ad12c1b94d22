"""Call destinations beyond `To`: what a Twilio voice request can make Twilio dial or fetch.

`To` is not a call's only destination. The TwiML a call runs can `<Dial>` any number, SIP address
or client, and a live call, a conference participant or a queued caller can be pointed at new
TwiML. On a key with `allowed_to_prefixes` (destination scope), these requests are checked:

| request (`POST /2010-04-01/Accounts/{sid}/…`) | checked |
| --- | --- |
| `Calls.json` (create) | `Twiml`, `Url`, `FallbackUrl`, `ApplicationSid` |
| `Calls/{Sid}.json` (update: redirects a live call) | `Twiml`, `Url`, `FallbackUrl` |
| `Conferences/{Sid}/Participants.json` (create) | `WaitUrl` |
| `Conferences/{Sid}/Participants/{CallSid}.json` | `HoldUrl`, `AnnounceUrl`, `WaitUrl` |
| `Conferences/{Sid}.json` (update) | `AnnounceUrl` |
| `Queues/{Sid}/Members/{CallSid}.json` (dequeue) | `Url` |
| `OutgoingCallerIds.json` (Twilio rings the number to verify it) | `PhoneNumber` |

- Inline `Twiml` is read by `twiml.read_twiml`: every dial target (bare `<Dial>` text,
  `<Number>`, `<Sip>`, `<Client>`) is checked like `To` (a `sip:` / `client:` target only when
  `allowed_to_prefixes` lists that channel) and every TwiML fetch must be named by the policy.
- A URL parameter (TwiML the proxy cannot see) must be named by `allowed_twiml_urls` (an exact
  https URL, or a prefix ending in `*`); `ApplicationSid` by `allowed_application_sids`. An
  empty value names nothing and passes.

Everything is refused with 403 `scope_violation` (400 `body_invalid` for TwiML that does not
parse). Keys without `allowed_to_prefixes` are not checked here. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from keybrake.core.destinations import check_phone_prefix, country_of, normalise_phone
from keybrake.core.errors import Denial
from keybrake.core.params import Params
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.vendors.rates import TwilioRates
from keybrake.vendors.twiml import Target, read_twiml

if TYPE_CHECKING:  # twilio_policy reads twiml_url_problem from here
    from keybrake.vendors.twilio_policy import TwilioPolicy

API = "2010-04-01"


def _post(rest: str) -> EndpointPattern:
    return parse_pattern(f"POST /{API}/Accounts/*/{rest}")


CALLS_CREATE = _post("Calls.json")
CALLS_UPDATE = _post("Calls/*.json")
PARTICIPANT_UPDATE = _post("Conferences/*/Participants/*.json")
CONFERENCE_UPDATE = _post("Conferences/*.json")
QUEUE_MEMBER_UPDATE = _post("Queues/*/Members/*.json")
CALLER_ID_CREATE = _post("OutgoingCallerIds.json")


@dataclass(frozen=True)
class VoiceEndpoint:
    pattern: EndpointPattern
    url_params: tuple[str, ...] = ()  # TwiML (or audio that may be TwiML) Twilio fetches from the URL
    twiml: bool = False  # takes inline `Twiml`
    application: bool = False  # takes `ApplicationSid` (the application's TwiML runs the call)
    numbers: tuple[str, ...] = ()  # parameters naming a number Twilio rings, besides `To`


VOICE = (
    VoiceEndpoint(CALLS_CREATE, ("Url", "FallbackUrl"), twiml=True, application=True),
    VoiceEndpoint(CALLS_UPDATE, ("Url", "FallbackUrl"), twiml=True),
    VoiceEndpoint(_post("Conferences/*/Participants.json"), ("WaitUrl",)),
    VoiceEndpoint(PARTICIPANT_UPDATE, ("HoldUrl", "AnnounceUrl", "WaitUrl")),
    VoiceEndpoint(CONFERENCE_UPDATE, ("AnnounceUrl",)),
    VoiceEndpoint(QUEUE_MEMBER_UPDATE, ("Url",)),
    VoiceEndpoint(CALLER_ID_CREATE, numbers=("PhoneNumber",)),
)
PATTERNS = tuple(v.pattern for v in VOICE)
# Parameter names whose exact spelling matters here: a differently-cased twin is refused.
PARAMS = ("Twiml", "Url", "FallbackUrl", "ApplicationSid", "WaitUrl", "HoldUrl", "AnnounceUrl", "PhoneNumber")


def plain_url_path(url: str) -> bool:
    """Whether a URL's path says what it means: no dot segments (`.`, `..`, or `%2e` spellings),
    no encoded `/` and no backslash — which a server would resolve to another path than the one
    a prefix match sees (`https://hooks.example.com/twiml/../../evil`)."""
    path = urlsplit(url).path
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            return False
    return True


def url_named(url: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether `allowed_twiml_urls` names `url`: equal to an entry, or starting with a `…*` entry's
    prefix; a URL whose path is not plain (dot segments, encoded slashes) is never named."""
    if not plain_url_path(url):
        return False
    for entry in allowed or ():
        if entry.endswith("*"):
            if url.startswith(entry[:-1]):
                return True
        elif url == entry:
            return True
    return False


def check_call_control(policy: TwilioPolicy, method: str, path: tuple[str, ...], params: Params) -> int:
    """Refuse what a voice request would dial or fetch outside the key's scope (see the module doc).

    Returns the number of TwiML dial targets checked. Raises Denial scope_violation (403) or
    body_invalid (400, TwiML that does not parse).
    """
    if policy.allowed_to_prefixes is None:
        return 0
    endpoint = next((v for v in VOICE if v.pattern.matches(method, path)), None)
    if endpoint is None:
        return 0
    for name in endpoint.url_params:
        _check_url(policy, (params.scalar(name) or "").strip(), f"parameter {name!r}")
    if endpoint.application:
        sid = params.scalar("ApplicationSid") or ""
        if sid and sid not in (policy.allowed_application_sids or ()):
            raise Denial(
                "scope_violation",
                f"ApplicationSid {sid[:40]!r} is not in this key's allowed_application_sids: the application's TwiML "
                "could dial numbers outside allowed_to_prefixes. Nothing was sent. Do not retry.",
            )
    for name in endpoint.numbers:
        value = params.scalar(name)
        if value:
            check_target(policy, Target("number", value), f"parameter {name!r}")
    text = params.scalar("Twiml") if endpoint.twiml else None
    if not text or not text.strip():
        return 0
    plan = read_twiml(text)
    for fetch in plan.fetches:
        if fetch.url is None:
            raise Denial(
                "scope_violation",
                f"Parameter 'Twiml': {fetch.where} makes Twilio request the current document's URL, which an inline "
                "document does not have; give an action URL named in allowed_twiml_urls. Nothing was sent.",
            )
        _check_url(policy, fetch.url, f"Twiml {fetch.where}")
    for target in plan.targets:
        check_target(policy, target, "Twiml <Dial>")
    return len(plan.targets)


def _check_url(policy: TwilioPolicy, url: str, where: str) -> None:
    if url and not url_named(url, policy.allowed_twiml_urls):
        raise Denial(
            "scope_violation",
            f"{where} makes Twilio fetch TwiML from {url[:100]!r}, which Keybrake cannot see; on a key with "
            "allowed_to_prefixes it must be named in allowed_twiml_urls. Nothing was sent. Do not retry unchanged.",
        )


def check_target(policy: TwilioPolicy, target: Target, where: str) -> str:
    """The normalised target (`+1415…` or `sip:…`); raises scope_violation like `To` would."""
    raw = "client:" + target.value if target.noun == "client" else target.value
    channels = [p for p in policy.allowed_to_prefixes or () if p.endswith(":")]
    try:
        normalised = normalise_phone(raw, default_calling_code=policy.default_calling_code, channels=channels)
        if normalised.startswith("+"):
            check_phone_prefix(normalised, policy.allowed_to_prefixes)
    except Denial as denial:
        raise Denial(denial.code, f"{where}: {denial.message}") from None
    return normalised


def twiml_url_problem(entry: str) -> str | None:
    """Why an `allowed_twiml_urls` entry is refused (None: valid).

    An entry is an absolute `https://` URL, matched exactly, or a prefix ending in `*` that
    includes at least the `/` after the host, so that it pins the host (`https://example.com*`
    would also match `https://example.com.evil.org/`).
    """
    if any(ch.isspace() or ord(ch) < 0x20 or ch in "\\\x7f" for ch in entry):
        return "contains whitespace, a backslash or control characters"
    prefix = entry.endswith("*")
    base = entry[:-1] if prefix else entry
    if "*" in base:
        return "may contain '*' only as its last character"
    parts = urlsplit(base)
    if parts.scheme != "https" or not base.startswith("https://") or not parts.netloc:
        return "is not an absolute https:// URL"
    if "@" in parts.netloc:
        return "has user information ('@') in its host part"
    if not plain_url_path(base):
        return "has dot segments ('.', '..'), an encoded '/' or a backslash in its path"
    if prefix and not parts.path.startswith("/"):
        return "is a prefix that does not pin the host: end it after the path's first '/', e.g. 'https://example.com/*'"
    return None


def child_leg_rate(method: str, path: tuple[str, ...], params: Params, rates: TwilioRates) -> Decimal:
    """USD per minute of the dearest leg a new call's TwiML can `<Dial>` (0 when it dials nothing).

    Twilio bills every dialled leg as a child call of its own, beside the parent leg to `To`.
    Dials run one at a time and end with the parent, so the child legs together last at most as
    long as the parent: a call costs at most minutes × (rate of `To` + this rate). TwiML Keybrake
    cannot see (`Url`, `FallbackUrl`, `ApplicationSid`, a fetch inside inline TwiML, TwiML it
    cannot read) may dial anywhere: the highest per-minute rate of the table.
    """
    if not CALLS_CREATE.matches(method, path):
        return Decimal(0)
    table = rates.tables["call_per_minute"]
    unseen = max(table.values())
    text = params.scalar("Twiml")
    if not text or not text.strip() or params.scalar("FallbackUrl"):
        return unseen
    try:
        plan = read_twiml(text)
    except Denial:  # a key without destination scope may send TwiML beyond the safe list
        return unseen
    if plan.fetches:
        return unseen
    worst = Decimal(0)
    for target in plan.targets:
        try:
            number = normalise_phone(target.value, default_calling_code=None) if target.noun == "number" else None
        except Denial:
            number = None
        rate = rates.rate("call_per_minute", country_of(number)) if number else table["default"]
        worst = max(worst, rate)
    return worst
