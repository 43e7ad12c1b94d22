"""Generated: what inline TwiML makes Twilio dial or fetch, against a small reference interpreter.

`reference()` models Twilio's TwiML voice semantics permissively and independently of Keybrake's
reader: every `<Dial>` target (bare text, `<Number>`, `<Sip>`, `<Client>` / `<Identity>`), every
TwiML fetch (`action`, `url`, `waitUrl`, `referUrl` in any letter case, `<Redirect>`, a `<Gather>`
or `<Record>` without `action`), and any verb or noun whose effect it does not model (`<Connect>`,
`<Refer>`, `<Application>`, a miscased tag …). For random documents (nesting, verbs, nouns, number
formats, attributes, stray text) on keys with destination scope: Keybrake refuses, or every
target the reference finds is inside `allowed_to_prefixes`, every fetch is named by
`allowed_twiml_urls`, and nothing unmodelled is present. Documents built only from the known-safe
list are admitted (the check never gets in the way of a legitimate call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

import pytest
from defusedxml.ElementTree import fromstring
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.params import Params
from keybrake.vendors.twilio_policy import TwilioPolicy
from keybrake.vendors.twilio_voice import check_call_control, url_named

HOOK = "https://hooks.example.com/twiml/next"
NAMED = ("https://hooks.example.com/twiml/*", "https://cdn.example.com/exact.xml")
URLS = (HOOK, "https://cdn.example.com/exact.xml", "https://cdn.example.com/exact.xml?x", "https://evil.example/t",
        "https://hooks.example.com.evil.org/twiml/a", "/relative", "")  # fmt: skip
NUMBERS = (
    "+14155550100", "+1 212 555 0100", "+1-900-555-0100", "(415) 555-0100", "4155550100", "+882345678901",
    "0044 7700 900123", "+447700900123", "whatsapp:+447700900123", " +14155550100 ", "+1415", "sip:a@b.example",
    "client:alice", "alice", "+1\n4155550100", "001 415 555 0100", "+86 138 0013 8000",
)  # fmt: skip
CALLS = ("POST", ("2010-04-01", "Accounts", "vk_x", "Calls.json"))
UPDATE = ("POST", ("2010-04-01", "Accounts", "vk_x", "Calls", "CA" + "0" * 32 + ".json"))


@dataclass
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    text: str = ""
    tail: str = ""

    def xml(self) -> str:
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in self.attrs.items())
        inner = escape(self.text) + "".join(c.xml() for c in self.children)
        return f"<{self.tag}{attrs}>{inner}</{self.tag}>{escape(self.tail)}"


# --- the reference interpreter (permissive model of Twilio) -----------------------------------

FETCH_ATTRS = {"action", "url", "waiturl", "referurl"}
MODELLED = {"Response", "Say", "Play", "Pause", "Hangup", "Reject", "Leave", "Gather", "Record", "Dial", "Enqueue",
            "Redirect", "Number", "Sip", "Client", "Identity", "Parameter", "Conference", "Queue"}  # fmt: skip
# SSML inside <Say> only shapes speech.
MODELLED |= {"break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w"}


@dataclass
class Effects:
    targets: list[str] = field(default_factory=list)
    fetches: list[str | None] = field(default_factory=list)  # None: the current document's URL
    unmodelled: list[str] = field(default_factory=list)


def reference(text: str) -> Effects:
    out = Effects()

    def walk(el: Element) -> None:
        tag = getattr(el, "tag", None)
        if not isinstance(tag, str) or tag not in MODELLED:
            out.unmodelled.append(str(tag))
        attrs: dict[str, str] = getattr(el, "attrib", {})
        for name, value in attrs.items():
            if name.lower() in FETCH_ATTRS and value.strip():
                out.fetches.append(value.strip())
        if tag in ("Gather", "Record") and not any(n.lower() == "action" for n in attrs):
            out.fetches.append(None)
        body = ((getattr(el, "text", None) or "") + "".join(c.tail or "" for c in el)).strip()
        if tag == "Redirect":
            out.fetches.append(body or None)
        if tag == "Dial" and body:
            out.targets.append(body)  # Twilio may read the text whether or not nouns follow
        if tag in ("Number", "Sip") and body:
            out.targets.append(body)
        if tag == "Client":
            names = [c.text or "" for c in el if c.tag == "Identity"] + ([body] if body else [])
            out.targets += ["client:" + n.strip() for n in names if n.strip()]
        for child in el:
            walk(child)

    walk(fromstring(text))
    return out


def inside(raw: str, policy: TwilioPolicy) -> bool:
    """The reference reading of a destination: channels, punctuation, 00, a +1 default code."""
    prefixes = policy.allowed_to_prefixes or ()
    value = raw.strip()
    m = re.match(r"^([A-Za-z][A-Za-z0-9-]*):", value)
    if m:
        channel = m[1].lower() + ":"
        if channel != "whatsapp:":
            return channel in prefixes
        value = value[len(channel) :]
    digits = re.sub(r"[ \-.()\t]", "", value)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        if policy.default_calling_code is None or not digits.isdigit():
            return False
        digits = policy.default_calling_code + digits
    return re.fullmatch(r"\+[1-9][0-9]{6,14}", digits) is not None and any(digits.startswith(p) for p in prefixes)


# --- generators ----------------------------------------------------------------------------------

ANY_ATTRS = ("action", "url", "waitUrl", "referUrl", "method", "timeout", "callerId", "record", "statusCallback",
             "Action", "sendDigits", "loop", "voice", "length", "numDigits")  # fmt: skip
ANY_TAGS = ("Say", "Play", "Pause", "Hangup", "Reject", "Leave", "Gather", "Record", "Dial", "Enqueue", "Redirect",
            "Connect", "Start", "Refer", "Pay", "Sms", "Stream", "dial", "Number", "Sip", "Client", "Identity",
            "Parameter", "Conference", "Queue", "Application", "Sim", "number")  # fmt: skip


VALUES = (*URLS, HOOK, HOOK, "POST", "10", "+14155550100", "true")
ATTRS = st.dictionaries(st.sampled_from(ANY_ATTRS), st.sampled_from(VALUES), max_size=3)
TEXTS = st.sampled_from(("", "", "", *NUMBERS, *URLS, "hi", " "))
TAILS = st.sampled_from(("", "", " ", "+882345678901"))


def nodes(children: st.SearchStrategy[list[Node]]) -> st.SearchStrategy[Node]:
    return st.builds(Node, st.sampled_from(ANY_TAGS), ATTRS, children, TEXTS, TAILS)


LEAVES = nodes(st.just([]))
LEVEL1 = nodes(st.lists(LEAVES, max_size=3))
LEVEL2 = nodes(st.lists(st.one_of(LEAVES, LEVEL1), max_size=2))
LEVEL3 = nodes(st.lists(st.one_of(LEVEL1, LEVEL2), max_size=2))
DOCS = st.lists(st.one_of(LEAVES, LEVEL1, LEVEL2, LEVEL3), min_size=1, max_size=3).map(
    lambda verbs: Node("Response", children=verbs).xml()
)


def policies() -> st.SearchStrategy[TwilioPolicy]:
    return st.builds(
        TwilioPolicy,
        allowed_to_prefixes=st.lists(
            st.sampled_from(("+1", "+1415", "+44", "sip:", "client:")), min_size=1, max_size=3, unique=True
        ).map(tuple),
        default_calling_code=st.sampled_from((None, "+1")),
        allowed_twiml_urls=st.sampled_from((None, NAMED, (HOOK,))),
    )


def admitted(policy: TwilioPolicy, twiml: str, where: tuple[str, tuple[str, ...]] = CALLS) -> bool:
    try:
        check_call_control(policy, where[0], where[1], Params({"Twiml": (twiml,)}, frozenset({"Twiml"})))
    except Denial as denial:
        assert denial.code in ("scope_violation", "body_invalid"), denial
        return False
    return True


# Documents shaped like real TwiML, drawn from pools: the safe pools give documents Keybrake must
# admit; the full pools (any number, any URL, extra attributes, random foreign nodes injected)
# give documents near the boundary, so that the property is exercised on admitted ones too.
SAFE_TARGETS = ("+14155550100", "+1 212 555 0100", "(415) 555-0100", "sip:desk@pbx.example", "client:alice")
SAFE_URLS = (HOOK, "https://cdn.example.com/exact.xml")
SAFE_POLICY = TwilioPolicy(
    allowed_to_prefixes=("+1", "sip:", "client:"), default_calling_code="+1", allowed_twiml_urls=NAMED
)
KINDS = ("say", "play", "pause", "gather", "dial", "nouns", "redirect", "record", "enqueue", "conference")
FOREIGN = ("Connect", "Refer", "Start", "Pay", "Sms", "Application", "Sim", "dial", "Gather", "Queue", "Say")


@st.composite
def shaped_doc(draw: st.DrawFn, targets: tuple[str, ...], urls: tuple[str, ...], wild: bool) -> str:
    def url() -> str:
        return draw(st.sampled_from(urls))

    def fetch(name: str) -> dict[str, str]:
        """A TwiML-fetching attribute: always in safe documents, half the time in wild ones."""
        return {name: url()} if not wild or draw(st.booleans()) else {}

    def extra(node: Node) -> Node:
        if wild and draw(st.integers(0, 5)) == 0:
            node.attrs.update(draw(ATTRS))
        if wild and draw(st.integers(0, 7)) == 0:
            node.children.append(draw(LEVEL1))
        return node

    def say() -> Node:
        return extra(Node("Say", {"voice": "alice"}, [Node("break", {"time": "1s"}, tail=" there")], "Hello"))

    def noun(target: str) -> Node:
        if target.lower().startswith("sip:"):
            return extra(Node("Sip", {"url": url()} if draw(st.booleans()) else {}, text=target))
        if target.startswith("client:") and draw(st.booleans()):
            return extra(Node("Client", children=[Node("Identity", text=target[7:]), Node("Parameter", {"name": "a"})]))
        if target.startswith("client:"):
            return extra(Node("Client", text=target[7:]))
        return extra(Node("Number", {"sendDigits": "1w2", **fetch("url")}, text=target))

    def tail() -> str:
        return draw(st.sampled_from(("", "", " ", *targets))) if wild else ""

    verbs: list[Node] = []
    for kind in draw(st.lists(st.sampled_from(KINDS + (("foreign",) if wild else ())), min_size=1, max_size=4)):
        if kind == "say":
            verbs.append(say())
        elif kind == "play":
            verbs.append(extra(Node("Play", {"loop": "2"}, text="https://cdn.example.com/a.mp3")))
        elif kind == "pause":
            verbs.append(extra(Node("Pause", {"length": "2"})))
        elif kind == "gather":
            verbs.append(extra(Node("Gather", {**fetch("action"), "numDigits": "1"}, [say(), Node("Pause")])))
        elif kind == "dial":
            target = draw(st.sampled_from([t for t in targets if not t.startswith("client:")] or ["+14155550100"]))
            verbs.append(extra(Node("Dial", {"timeout": "20"}, text=target)))
        elif kind == "nouns":
            nouns = [noun(draw(st.sampled_from(targets))) for _ in range(draw(st.integers(1, 3)))]
            for n in nouns:
                n.tail = tail()
            verbs.append(extra(Node("Dial", {**fetch("action"), "callerId": "+14155550199"}, nouns)))
        elif kind == "redirect":
            verbs.append(extra(Node("Redirect", {"method": "POST"}, text=url())))
        elif kind == "record":
            verbs.append(extra(Node("Record", {**fetch("action"), "maxLength": "30"})))
        elif kind == "enqueue":
            verbs.append(extra(Node("Enqueue", fetch("waitUrl"), text="support")))
        elif kind == "conference":
            verbs.append(extra(Node("Dial", children=[Node("Conference", {"beep": "false"}, text="room-1")])))
        else:  # a verb or noun in a place Keybrake does not accept, around an accepted shape
            inner = draw(st.sampled_from(("noun", "say", "none")))
            children = [noun(draw(st.sampled_from(targets)))] if inner == "noun" else [say()] if inner == "say" else []
            verbs.append(
                Node(draw(st.sampled_from(FOREIGN)), children=children, text=draw(st.sampled_from(("", tail()))))
            )
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + Node("Response", children=verbs).xml()


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(DOCS, shaped_doc(NUMBERS + SAFE_TARGETS, URLS, wild=True)),
    policies(),
    st.sampled_from((CALLS, UPDATE)),
)
def test_admitted_twiml_dials_and_fetches_only_what_the_key_allows(
    twiml: str, policy: TwilioPolicy, where: object
) -> None:
    if not admitted(policy, twiml, where):  # type: ignore[arg-type]
        return
    effects = reference(twiml)
    assert not effects.unmodelled, (twiml, effects.unmodelled)
    for url in effects.fetches:
        assert url is not None and url_named(url, policy.allowed_twiml_urls), (twiml, url)
    for target in effects.targets:
        assert inside(target, policy), (twiml, target, policy.allowed_to_prefixes)


@settings(max_examples=400, deadline=None)
@given(shaped_doc(SAFE_TARGETS, SAFE_URLS, wild=False))
def test_known_safe_twiml_is_admitted(twiml: str) -> None:
    assert admitted(SAFE_POLICY, twiml), twiml
    assert admitted(SAFE_POLICY, twiml, UPDATE)


@pytest.mark.parametrize(
    ("twiml", "code"),
    [
        ('<!DOCTYPE r [<!ENTITY a "+882345678901">]><Response><Dial>&a;</Dial></Response>', "body_invalid"),
        ('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Response><Say>&x;</Say></Response>', "body_invalid"),
        ("<Response><Dial>+1415", "body_invalid"),
        ("<Dial>+14155550100</Dial>", "body_invalid"),
        ('<Response xmlns="urn:x"><Say>hi</Say></Response>', "body_invalid"),
        ("<Response><Say>" + "x" * 4000 + "</Say></Response>", "body_invalid"),
        ("<Response><Say>" + "<prosody>" * 14 + "hi" + "</prosody>" * 14 + "</Say></Response>", "body_invalid"),
        ("<Response><Dial>+1415555<!-- -->0100</Dial></Response>", "scope_violation"),
        ("<Response><Dial>+14155550100<Number>+882345678901</Number></Dial></Response>", "scope_violation"),
        ("<Response><Dial><Number>+14155550100</Number>+882345678901</Dial></Response>", "scope_violation"),
        (
            "<Response><Dial><Application><ApplicationSid>AP1</ApplicationSid></Application></Dial></Response>",
            "scope_violation",
        ),
        ("<Response><Dial Action='https://evil.example/'>+14155550100</Dial></Response>", "scope_violation"),
        ("<Response><Refer><Sip>sip:x@y</Sip></Refer></Response>", "scope_violation"),
        ("<Response><Enqueue><Task>{}</Task></Enqueue></Response>", "scope_violation"),
        (
            "<Response><Dial><Client><Identity>a</Identity><Identity>b</Identity></Client></Dial></Response>",
            "scope_violation",
        ),
    ],
)
def test_what_cannot_be_read_with_certainty_is_refused(twiml: str, code: str) -> None:
    policy = TwilioPolicy(allowed_to_prefixes=("+1", "client:"), allowed_twiml_urls=NAMED)
    with pytest.raises(Denial) as exc:
        check_call_control(policy, *CALLS, Params({"Twiml": (twiml,)}, frozenset({"Twiml"})))
    assert exc.value.code == code


@pytest.mark.parametrize(
    "element",
    [
        "<Refer><Sip>sip:desk@pbx.example</Sip></Refer>",
        "<Connect><Stream url='wss://x.example/s'/></Connect>",
        "<Start><Stream url='wss://x.example/s'/></Start>",
        "<Pay/>",
        "<Prompt/>",
        "<Sms to='+882345678901'>hi</Sms>",
        "<Message to='+882345678901'>hi</Message>",
        "<Echo/>",
        "<dial>+14155550100</dial>",
        "<Dial><Application><ApplicationSid>AP0</ApplicationSid></Application></Dial>",
        "<Dial><Sim>DE0</Sim></Dial>",
        "<Dial><WhatsApp>+14155550100</WhatsApp></Dial>",
        "<Gather action='https://hooks.example.com/twiml/g'><Dial>+14155550100</Dial></Gather>",
        "<Say><audio src='https://x.example/a.mp3'/></Say>",
        "<Dial><Number url='https://evil.example/whisper'>+14155550100</Number></Dial>",
        "<Enqueue workflowSid='WW0'>support</Enqueue>",
    ],
)
def test_verbs_nouns_and_attributes_off_the_known_safe_list_are_refused(element: str) -> None:
    """Each is an otherwise admissible document: only the element named makes it refused."""
    policy = TwilioPolicy(allowed_to_prefixes=("+1", "sip:"), allowed_twiml_urls=NAMED)
    assert admitted(policy, "<Response><Say>ok</Say><Dial>+14155550100</Dial></Response>")
    assert not admitted(policy, f"<Response><Say>ok</Say>{element}</Response>")


def test_without_destination_scope_nothing_is_read() -> None:
    params = Params({"Twiml": ("<Response><Dial>+882345678901</Dial></Response>",)}, frozenset({"Twiml"}))
    assert check_call_control(TwilioPolicy(), *CALLS, params) == 0
    assert check_call_control(TwilioPolicy(allowed_to_prefixes=("+1",)), *CALLS, Params({}, frozenset())) == 0
