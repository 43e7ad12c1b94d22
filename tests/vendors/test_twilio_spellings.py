"""Generated: every spelling Twilio may route to an operation is classified like its `.json` form.

A reference model of Twilio's routing, at its most permissive: Twilio serves a resource under
`.json`, `.xml`, no extension and (for reads) `.csv` / `.html` (documented), and — since its
behaviour there is not documented — may also route any other extension or letter case to the
same operation. For every generated spelling (resource × method × extension × letter case),
Keybrake's whole pre-flight classification (canonical path → parse → guarded check → endpoint
allowlist → scope → estimate) must equal the `.json` spelling's, or the spelling is refused with
400 `path_invalid`. Documented spellings are never refused for their spelling alone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.patterns import first_match, parse_pattern
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors.twilio import Twilio
from keybrake.vendors.twilio_paths import SECRET_ANSWERS
from keybrake.vendors.twilio_pricing import TwilioParse

T = Twilio()
RATES = {"usd": Decimal(1)}
FORM = ("content-type", "application/x-www-form-urlencoded")
SID = "0123456789abcdef" * 2
# Operations as (canonical segments after /2010-04-01, methods Twilio serves them with). `{}` are ids.
RESOURCES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Accounts", "{vk}", "Messages"), ("GET", "POST")),
    (("Accounts", "{vk}", "Messages", "{SM}"), ("GET", "POST", "DELETE")),
    (("Accounts", "{vk}", "Calls"), ("GET", "POST")),
    (("Accounts", "{vk}", "Calls", "{CA}"), ("GET", "POST", "DELETE")),
    (("Accounts", "{vk}", "Conferences", "{CF}", "Participants"), ("GET", "POST")),
    (("Accounts", "{vk}", "Conferences", "{CF}", "Participants", "{CA}"), ("GET", "POST", "DELETE")),
    (("Accounts", "{vk}", "Conferences", "{CF}"), ("GET", "POST")),
    (("Accounts", "{vk}", "Queues", "{QU}", "Members", "{CA}"), ("GET", "POST")),
    (("Accounts", "{vk}", "OutgoingCallerIds"), ("GET", "POST")),
    (("Accounts", "{vk}"), ("GET", "POST")),
    (("Accounts",), ("GET", "POST")),
    (("Accounts", "{vk}", "Keys"), ("GET", "POST")),
    (("Accounts", "{vk}", "Keys", "{SK}"), ("GET", "POST", "DELETE")),
    (("Accounts", "{vk}", "SigningKeys"), ("GET", "POST")),
    (("Accounts", "{vk}", "IncomingPhoneNumbers"), ("GET", "POST")),
    (("Accounts", "{vk}", "IncomingPhoneNumbers", "Local"), ("GET", "POST")),
    (("Accounts", "{vk}", "Recordings", "{RE}"), ("GET", "DELETE")),
    (("Accounts", "{vk}", "Applications"), ("GET", "POST")),
    (("Accounts", "{vk}", "Calls", "{CA}", "Recordings"), ("GET", "POST")),
    (("Accounts", "{vk}", "Usage", "Records", "Daily"), ("GET",)),
)
DOCUMENTED = {
    "GET": (".json", ".xml", "", ".csv", ".html"),
    "POST": (".json", ".xml", ""),
    "DELETE": (".json", ".xml", ""),
}
OTHER_EXTENSIONS = (".JSON", ".Xml", ".txt", ".mp3", ".json.xml", ".", ".php")
BODIES = (
    b"To=%2B447700900123&From=%2B14155550199&Body=hi",
    b"To=%2B14155550100&From=%2B14155550199&Body=hi",
    b"To=%2B14155550100&From=%2B1&Twiml=%3CResponse%3E%3CDial%3E%2B882345678901%3C%2FDial%3E%3C%2FResponse%3E",
    b"To=%2B14155550100&From=%2B1&Url=https%3A%2F%2Fevil.example%2Ft",
    b"Twiml=%3CResponse%3E%3CSay%3Ehi%3C%2FSay%3E%3C%2FResponse%3E",
    b"PhoneNumber=%2B882345678901",
    b"",
)
POLICIES = (
    Policy(),
    Policy(max_usd_per_call=1_000_000, vendor_data={"allowed_to_prefixes": ["+1"]}),
    Policy(
        vendor_data={"allowed_to_prefixes": ["+1"]},
        allowed_endpoints=tuple(
            parse_pattern(p) for p in ("POST /2010-04-01/Accounts/*/Messages.json", "GET /2010-04-01/**")
        ),
    ),
)


def ids(template: str) -> str:
    return "vk_test" if template == "{vk}" else template[1:3] + SID


def recase(segment: str, how: int) -> str:
    return [segment, segment.lower(), segment.upper(), segment.swapcase(), segment[:1].lower() + segment[1:]][how]


def classify(method: str, segments: tuple[str, ...], body: bytes, policy: Policy) -> tuple[Any, ...]:
    """What Keybrake decides before reserving: the same steps as the pipeline, pure."""
    raw = ("/" + "/".join(segments)).encode()
    try:
        canon = T.canonical(method, segments)
        vreq = T.parse(ProxyRequest(method, raw, b"", (FORM,), body if method == "POST" else b"", "::1"), canon)
        if first_match(T.guarded, method, canon) is not None:
            return ("guarded",)
        allowed = policy.allowed_endpoints
        if allowed is not None and first_match(allowed, method, canon) is None:
            return ("endpoint_not_allowed",)
        scope = T.check_scope(policy, vreq)
        vreq = vreq.scoped(scope)
        est = T.estimate(vreq, RATES)
        assert isinstance(vreq.detail, TwilioParse)
        return ("ok", est.pricing, est.amount, est.cost_kind, est.sends, vreq.detail.kind, scope.detail)
    except Denial as denial:
        return ("denied", denial.code)


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, tuple[str, ...], tuple[str, ...], bool, bytes, Policy]:
    names, methods = draw(st.sampled_from(RESOURCES))
    method = draw(st.sampled_from(methods))
    documented = DOCUMENTED[method]
    ext = draw(st.sampled_from(documented + OTHER_EXTENSIONS))
    cased = draw(st.booleans())
    segs = []
    for name in names:
        if name.startswith("{"):
            segs.append(ids(name))
        else:
            segs.append(recase(name, draw(st.integers(0, 4))) if cased else name)
    correct = [ids(n) if n.startswith("{") else n for n in names]  # the operation Twilio may route it to
    canonical = ("2010-04-01", *correct[:-1], correct[-1] + ".json")
    spelled = ("2010-04-01", *segs[:-1], segs[-1] + ext)
    exact = segs == correct
    return (
        method,
        spelled,
        canonical,
        exact and ext in documented,
        draw(st.sampled_from(BODIES)),
        draw(st.sampled_from(POLICIES)),
    )


@settings(max_examples=2000, deadline=None)
@given(spellings())
def test_every_spelling_is_classified_like_its_json_form_or_refused(
    case: tuple[str, tuple[str, ...], tuple[str, ...], bool, bytes, Policy],
) -> None:
    method, spelled, canonical, documented, body, policy = case
    want = classify(method, canonical, body, policy)
    got = classify(method, spelled, body, policy)
    if got == ("denied", "path_invalid") and got != want:
        # A documented spelling is refused only where its answer would carry a secret Keybrake can
        # remove from JSON only (an account, an API key).
        secret = any(p.matches(method, canonical) for p in SECRET_ANSWERS)
        assert not documented or (secret and not spelled[-1].endswith(".json")), (method, "/".join(spelled))
        return
    assert got == want, (method, "/".join(spelled), "/".join(canonical))


def test_the_issue_examples() -> None:
    policy = Policy(vendor_data={"allowed_to_prefixes": ["+1"]})
    body = b"To=%2B447700900123&From=%2B14155550199&Body=hi"
    base = ("2010-04-01", "Accounts", "vk_x")
    for last in ("Messages.xml", "Messages", "Messages.json"):
        assert classify("POST", (*base, last), body, policy) == ("denied", "scope_violation")
    for last in ("messages.json", "Messages.JSON", "Messages.csv"):
        assert classify("POST", (*base, last), body, policy) == ("denied", "path_invalid")
    assert classify("GET", ("2010-04-01", "Accounts", "vk_x.xml"), b"", Policy()) == ("guarded",)
    assert classify("GET", ("2010-04-01", "Accounts", "vk_x"), b"", Policy()) == ("guarded",)
    # Recording media keeps its own spelling (a free read).
    assert T.canonical("GET", (*base, "Recordings", "RE1.mp3")) == (*base, "Recordings", "RE1.mp3")


def test_endpoint_patterns_spelled_other_than_json_are_refused_at_issue() -> None:
    def problem(text: str) -> str | None:
        return T.pattern_problem(parse_pattern(text))

    for fine in (
        "POST /2010-04-01/Accounts/*/Messages.json",
        "GET /2010-04-01/**",
        "* /2010-04-01/Accounts/*",
        "POST /2010-04-01/Accounts/*/Messages*",
        "GET /2010-04-01/Accounts/*/Recordings/*.mp3",
        "GET /2010-04-01",
    ):
        assert problem(fine) is None, fine
    for bad, hint in (
        ("POST /2010-04-01/Accounts/*/Messages.xml", "Messages.json"),
        ("POST /2010-04-01/Accounts/*/Messages", "Messages.json"),
        ("GET /2010-04-01/Accounts/*/Calls.csv", "Calls.json"),
        ("GET /2010-04-01/Accounts/*/Messages.JSON", "Messages.json"),
        ("GET /2010-04-01/Accounts", "Accounts.json"),
    ):
        assert hint in (problem(bad) or ""), bad
