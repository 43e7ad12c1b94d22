"""What an inline TwiML document makes Twilio dial and fetch, read one strict way.

A call's `Twiml` parameter is a program: besides `To`, its `<Dial>` can ring any number, SIP
address or client, and verbs such as `<Redirect>` or attributes such as `action` make Twilio fetch
more TwiML from a URL Keybrake never sees. `read_twiml` lists every dial target and every fetch
of a document, or refuses. It accepts only the voice verbs, nouns and attributes below, taken
from Twilio's TwiML Voice reference (twilio.com/docs/voice/twiml); anything else — `<Connect>`,
`<Refer>`, `<Start>`, `<Pay>`, `<Sms>`, `<Dial><Application>`, `<Enqueue><Task>`, an unknown
attribute, a namespace, comments, text where Twilio reads none — is refused (fail closed).
TwiML element and attribute names are case-sensitive, as at Twilio.

The XML is parsed with defusedxml (no DTDs, entities or external references) and bounded to
Twilio's own 4,000-character `Twiml` limit and a nesting depth of 12. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from keybrake.core.errors import Denial

MAX_TWIML_CHARS = 4000  # Twilio: "Max 4000 characters"
MAX_DEPTH = 12

_STATUS = frozenset({"statusCallback", "statusCallbackEvent", "statusCallbackMethod"})
_RECORDING_STATUS = frozenset(
    {"recordingStatusCallback", "recordingStatusCallbackMethod", "recordingStatusCallbackEvent"}
)
_AMD = frozenset(
    {
        "machineDetection",
        "machineDetectionTimeout",
        "machineDetectionSpeechThreshold",
        "machineDetectionSpeechEndThreshold",
        "machineDetectionSilenceTimeout",
        "amdStatusCallback",
        "amdStatusCallbackMethod",
    }
)
_SSML = frozenset({"break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w"})
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_DIAL_NOUNS = frozenset({"Number", "Sip", "Client", "Conference", "Queue"})
_GATHER_NESTED = frozenset({"Say", "Play", "Pause"})
VERBS = frozenset(
    {"Say", "Play", "Pause", "Hangup", "Reject", "Leave", "Gather", "Record", "Dial", "Enqueue", "Redirect"}
)


@dataclass(frozen=True)
class _Spec:
    """One element: its attributes, which of them name TwiML Twilio fetches, its children, its text.

    text: "none" (whitespace only), "free" (speech, names, audio URLs), "fetch" (a TwiML URL),
    or a dial target noun ("number", "sip", "client").
    """

    attrs: frozenset[str]
    fetch_attrs: frozenset[str] = frozenset()
    # Fetched even when absent: Twilio then requests "the current document URL", unknown here.
    fetch_when_absent: frozenset[str] = frozenset()
    children: frozenset[str] = frozenset()
    text: str = "none"


def _s(*names: str) -> frozenset[str]:
    return frozenset(names)


_SPECS: dict[str, _Spec] = {
    "Response": _Spec(_s(), children=VERBS),
    "Say": _Spec(_s("voice", "language", "loop"), children=_SSML, text="free"),
    "Play": _Spec(_s("loop", "digits"), text="free"),  # audio, never executed as TwiML
    "Pause": _Spec(_s("length")),
    "Hangup": _Spec(_s()),
    "Reject": _Spec(_s("reason")),
    "Leave": _Spec(_s()),
    "Gather": _Spec(
        _s(
            "action",
            "method",
            "timeout",
            "speechTimeout",
            "maxSpeechTime",
            "profanityFilter",
            "finishOnKey",
            "numDigits",
            "partialResultCallback",
            "partialResultCallbackMethod",
            "language",
            "hints",
            "bargeIn",
            "debug",
            "actionOnEmptyResult",
            "speechModel",
            "enhanced",
            "input",
        ),
        fetch_attrs=_s("action"),
        fetch_when_absent=_s("action"),
        children=_GATHER_NESTED,
    ),
    "Record": _Spec(
        _s(
            "action",
            "method",
            "timeout",
            "finishOnKey",
            "maxLength",
            "playBeep",
            "trim",
            "transcribe",
            "transcribeCallback",
            *_RECORDING_STATUS,
        ),
        fetch_attrs=_s("action"),
        fetch_when_absent=_s("action"),
    ),
    "Enqueue": _Spec(
        _s("action", "method", "waitUrl", "waitUrlMethod"), fetch_attrs=_s("action", "waitUrl"), text="free"
    ),
    "Redirect": _Spec(_s("method"), text="fetch"),
    "Dial": _Spec(
        _s(
            "action",
            "method",
            "timeout",
            "hangupOnStar",
            "timeLimit",
            "callerId",
            "record",
            "trim",
            "recordingTrack",
            "answerOnBridge",
            "ringTone",
            "referUrl",
            "referMethod",
            *_RECORDING_STATUS,
        ),
        fetch_attrs=_s("action", "referUrl"),
        children=_DIAL_NOUNS,
        text="number",
    ),
    "Number": _Spec(_s("sendDigits", "url", "method", "byoc", *_STATUS, *_AMD), fetch_attrs=_s("url"), text="number"),
    "Sip": _Spec(_s("username", "password", "url", "method", *_STATUS, *_AMD), fetch_attrs=_s("url"), text="sip"),
    "Client": _Spec(
        _s("url", "method", *_STATUS), fetch_attrs=_s("url"), children=_s("Identity", "Parameter"), text="client"
    ),
    "Identity": _Spec(_s(), text="client"),
    "Parameter": _Spec(_s("name", "value")),
    "Conference": _Spec(
        _s(
            "muted",
            "beep",
            "startConferenceOnEnter",
            "endConferenceOnExit",
            "waitUrl",
            "waitMethod",
            "maxParticipants",
            "record",
            "region",
            "trim",
            "coach",
            "eventCallbackUrl",
            "jitterBufferSize",
            "participantLabel",
            *_STATUS,
            *_RECORDING_STATUS,
        ),
        fetch_attrs=_s("waitUrl"),
        text="free",
    ),
    "Queue": _Spec(_s("url", "method", "reservationSid", "postWorkActivitySid"), fetch_attrs=_s("url"), text="free"),
}
_SSML_ATTRS: dict[str, frozenset[str]] = {
    "break": _s("strength", "time"),
    "emphasis": _s("level"),
    "lang": _s(_XML_LANG),
    "p": _s(),
    "phoneme": _s("alphabet", "ph"),
    "prosody": _s("pitch", "rate", "volume"),
    "s": _s(),
    "say-as": _s("interpret-as", "format", "role"),
    "sub": _s("alias"),
    "w": _s("role"),
}
for _name, _attrs in _SSML_ATTRS.items():
    _SPECS[_name] = _Spec(_attrs, children=_SSML, text="free")


@dataclass(frozen=True)
class Target:
    """Something `<Dial>` rings: noun "number", "sip" or "client", and its text as written."""

    noun: str
    value: str


@dataclass(frozen=True)
class Fetch:
    """A TwiML document Twilio would request: where it is named, and its URL (None: the current
    document's URL, which an inline document does not have and Keybrake cannot see)."""

    where: str
    url: str | None


@dataclass(frozen=True)
class TwimlPlan:
    targets: tuple[Target, ...] = ()
    fetches: tuple[Fetch, ...] = field(default=())


def _malformed(why: str) -> Denial:
    return Denial("body_invalid", f"Parameter 'Twiml' is not TwiML Keybrake can read: {why}. Nothing was sent.")


def _refused(why: str) -> Denial:
    return Denial(
        "scope_violation",
        f"Parameter 'Twiml' refused on a key with allowed_to_prefixes: {why}. Nothing was sent. "
        "Do not retry unchanged.",
    )


def parse_twiml(text: str) -> Element:
    """The `<Response>` element of `text`; raises body_invalid for anything that is not plain XML."""
    if len(text) > MAX_TWIML_CHARS:
        raise _malformed(f"it is longer than Twilio's {MAX_TWIML_CHARS}-character limit")
    text = text.strip()  # whitespace around the document changes nothing Twilio runs
    parser = DefusedXMLParser(
        target=TreeBuilder(insert_comments=True, insert_pis=True),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        parser.feed(text)
        root: Element = parser.close()
    except (ParseError, DefusedXmlException) as exc:
        raise _malformed(f"the XML does not parse ({str(exc)[:120]})") from None
    if root.tag != "Response":
        raise _malformed("the root element must be <Response> (no namespace)")
    return root


def read_twiml(text: str) -> TwimlPlan:
    """Every dial target and TwiML fetch in an inline document (see the module doc).

    Raises a Denial: body_invalid (400) when it is not well-formed, too long or too deep;
    scope_violation (403) for any element, attribute or text outside the known-safe list.
    """
    root = parse_twiml(text)
    targets: list[Target] = []
    fetches: list[Fetch] = []
    _walk(root, 0, targets, fetches)
    return TwimlPlan(tuple(targets), tuple(fetches))


def _walk(el: Element, depth: int, targets: list[Target], fetches: list[Fetch]) -> None:
    if depth > MAX_DEPTH:
        raise _malformed(f"it nests deeper than {MAX_DEPTH} elements")
    name = el.tag  # checked against the parent's children (the root is <Response>)
    spec = _SPECS[name]
    for attr, value in el.attrib.items():
        if attr not in spec.attrs:
            raise _refused(f"attribute {attr[:40]!r} of <{name}> is not on Keybrake's known-safe list")
        if attr in spec.fetch_attrs and value.strip():
            fetches.append(Fetch(f"<{name} {attr}>", value.strip()))
    for attr in spec.fetch_when_absent:
        if attr not in el.attrib:
            fetches.append(Fetch(f"<{name}> without {attr}", None))
    children = list(el)
    for child in children:
        tag = child.tag
        if not isinstance(tag, str):
            raise _refused("comments and processing instructions are not accepted")
        if tag not in spec.children:
            where = "inside <Response>" if name == "Response" else f"inside <{name}>"
            raise _refused(f"<{tag[:40]}> {where} is not on Keybrake's known-safe list")
    content = (el.text or "") + "".join(c.tail or "" for c in children)
    value = content.strip()
    kind = spec.text
    if name == "Dial" and children:
        kind = "none"  # nouns name the targets; text beside them is refused
    if name == "Client" and any(c.tag == "Identity" for c in children):
        kind = "none"
        if sum(c.tag == "Identity" for c in children) > 1:
            raise _refused("<Client> names more than one <Identity>")
    if kind == "none":
        if value:
            raise _refused(f"<{name}> has text where Twilio reads none ({value[:40]!r})")
    elif kind == "fetch":
        if not value:
            raise _refused(f"<{name}> has no URL")
        fetches.append(Fetch(f"<{name}>", value))
    elif kind in ("number", "sip", "client") and (value or name in ("Number", "Sip", "Identity")):
        if not value:
            raise _refused(f"<{name}> is empty")
        targets.append(Target(kind, value))
    for child in children:
        _walk(child, depth + 1, targets, fetches)
