"""Secrets never cross Keybrake the wrong way (proxy/echoes.py, docs/vendors.md): the operator's
credential echoed in an answer (body, error text, `Link` header) reaches the agent redacted, for
every way a definition injects it; the agent's vault key in the query string or body is refused
before anything is sent, for Stripe, Resend and a vendor defined by a file. Real Keybrake servers
on loopback against a fake that echoes each request back."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import UpstreamResponse
from keybrake.proxy.echoes import MIN_ECHO_CHARS, check_vault_key_placement, credential_echoes, scrub_answer
from keybrake.vendors.base import REDACTED
from keybrake.vendors.configured import load
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.load import spec_of
from keybrake.vendors.configured.vendor import ConfiguredVendor
from tests.fakes.base import FakeServer, FakeThread, RecordedRequest
from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResend, FakeResendThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.vendors.configured_toml import dumps
from tests.vendors.one_parse_gen import props

SECRET = "ec_live_" + "7f3a" * 6


def echoco(credential: dict[str, Any], forward: tuple[str, ...] = ()) -> str:
    """A vendor defined by a file whose credential is injected as `credential` says (forwarding
    the headers `forward` too)."""
    return dumps(
        {
            "request": {"forward_headers": list(forward)},
            "format": 1,
            "name": "echoco",
            "base_url": "https://api.echoco.example",
            "upstream_hosts": ["api.echoco.example"],
            "credential": credential,
            "vault_key": {"arrives": "header", "header": "X-Echo-Key"},
            "error": {"body": {"error": "{code}", "message": "{message}"}},
            "endpoint": [
                {"match": "POST /send", "pricing": "per_item", "usd": "0.01",
                 "items": {"count": "values", "paths": ["to"]}},
                {"match": "GET /**", "pricing": "free"},
            ],
        }
    )  # fmt: skip


INJECTIONS = [
    {"inject": "query", "query": "api_key"},
    {"inject": "header", "header": "X-Echo-Token"},
    {"inject": "bearer"},
    {"inject": "basic", "username": "acct_1", "password": "{secret}"},
    {"inject": "basic", "username": "{secret}", "password": ""},
]


def built(credential: dict[str, Any], forward: tuple[str, ...] = ()) -> ConfiguredVendor:
    spec = spec_of(parse_definition(echoco(credential, forward), "echoco.toml", "echoco"))
    vendor = spec.build(spec.values({}))
    assert isinstance(vendor, ConfiguredVendor)
    return vendor


def spellings(credential: dict[str, Any]) -> list[str]:
    """How an answer may repeat the secret as the vendor received it."""
    out = [SECRET, quote(SECRET, safe=""), quote_plus(SECRET), json.dumps(SECRET)[1:-1]]
    if credential["inject"] == "basic":
        user, password = ("acct_1", SECRET) if credential["username"] == "acct_1" else (SECRET, "")
        out.append(base64.b64encode(f"{user}:{password}".encode()).decode())
    return out


# -- the mechanism, generated -----------------------------------------------------------------

text = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n"), max_size=20)


@props(300)
@given(
    credential=st.sampled_from(INJECTIONS),
    pieces=st.lists(st.tuples(text, st.integers(0, 4), st.booleans()), min_size=1, max_size=4),
    status=st.sampled_from([200, 400, 403, 500]),
)
def test_every_echo_of_the_injected_credential_is_redacted(
    credential: dict[str, Any], pieces: list[tuple[str, int, bool]], status: int
) -> None:
    forms = spellings(credential)
    body, link = "", ""
    for around, which, in_header in pieces:
        spelled = forms[which % len(forms)]
        if in_header:
            link += f"<https://api.echoco.example/x?{around}{spelled}>;"
        else:
            body += around + spelled
    resp = UpstreamResponse(status, [("link", link), ("x-other", "kept")], json.dumps({"t": body}).encode(), 1.0)
    out = scrub_answer(resp, credential_echoes(built(credential), SECRET.encode()))
    seen = out.body.decode() + "".join(v for _, v in out.headers)
    assert not any(f in seen for f in forms), seen
    assert ("x-other", "kept") in out.headers
    assert seen.count(REDACTED) >= len(pieces)
    json.loads(out.body)  # still the vendor's JSON


class Bearer:
    """What `credential_echoes` reads of a vendor that sends its secret as a bearer token."""

    def upstream_query(self, secret: bytes) -> list[tuple[str, str]]:
        return []

    def upstream_headers(self, secret: bytes) -> list[tuple[str, str]]:
        return [("authorization", "Bearer " + secret.decode())]


def spell_char(c: str, how: int) -> str:
    """`c` as a URL or JSON text may carry it: raw, `%XX` upper/lower, `\\uXXXX` upper/lower,
    JSON `\\/`; letters and digits stay as themselves."""
    if c.isascii() and c.isalnum():
        return c
    pct = "".join(f"%{b:02X}" for b in c.encode())
    data = c.encode("utf-16-be")
    units = "".join(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))
    forms = [c, pct, pct.lower(), units, units.upper().replace("\\U", "\\u"), "\\/" if c == "/" else c]
    return forms[how % len(forms)]


secret_text = st.text(alphabet=st.sampled_from("aZ09/+=-_.~:é€😀 "), min_size=MIN_ECHO_CHARS, max_size=24).filter(
    lambda t: t.strip() == t and len(t.strip()) >= MIN_ECHO_CHARS
)


@props(300)
@given(secret=secret_text, hows=st.lists(st.integers(0, 5), min_size=24, max_size=24), b64=st.integers(0, 4))
def test_every_generated_spelling_of_a_bearer_secret_is_redacted(secret: str, hows: list[int], b64: int) -> None:
    raw = secret.encode()
    if b64:
        encoded = (base64.b64encode if b64 % 2 else base64.urlsafe_b64encode)(raw).decode()
        spelled = encoded if b64 < 3 else encoded.rstrip("=")
    else:
        spelled = "".join(spell_char(c, h) for c, h in zip(secret, hows, strict=False))
    body = b'{"error": "<' + spelled.encode() + b'>"}'  # as the vendor wrote it
    resp = UpstreamResponse(401, [("link", f"<https://x.example/?t={spelled}>"), ("x-other", "kept")], body, 1.0)
    out = scrub_answer(resp, credential_echoes(Bearer(), raw))  # type: ignore[arg-type]
    assert spelled.encode() not in out.body and REDACTED.encode() in out.body, out.body
    assert out.headers[0] == ("link", f"<https://x.example/?t={REDACTED}>") and out.headers[1] == ("x-other", "kept")


def test_the_red_team_spellings_of_a_bearer_secret_are_redacted() -> None:
    echoes = credential_echoes(Bearer(), b"AbC/def+GhI=jkl/mno")  # type: ignore[arg-type]
    for body in (b'"AbC\\/def+GhI=jkl\\/mno"', b"t=AbC%2fdef%2bGhI%3djkl%2Fmno", b'"AbC\\u002fdef+GhI=jkl/mno"',
                 b"QWJDL2RlZitHaEk9amtsL21ubw==", b"QWJDL2RlZitHaEk9amtsL21ubw"):  # fmt: skip
        assert scrub_answer(UpstreamResponse(200, [], body, 1.0), echoes).body.strip(b'"t=') == REDACTED.encode()


def test_an_account_name_in_the_basic_user_is_not_redacted() -> None:
    echoes = credential_echoes(built(INJECTIONS[3]), SECRET.encode())
    assert "acct_1" not in echoes and SECRET in echoes


def _request(path: bytes, query: bytes, headers: tuple[tuple[str, str], ...] = ()) -> ProxyRequest:
    return ProxyRequest("POST", path, query, (("x-echo-key", "k"), *headers), b"", "127.0.0.1")


@pytest.mark.parametrize(
    ("path", "query", "body", "headers", "where"),
    [
        (b"/echoco/send", b"writeKey=TOKEN", b"", (), "query string"),
        (b"/echoco/send", b"a=1&k=TOKEN_pct", b"", (), "query string"),
        (b"/echoco/send", b"", b'{"to": "a", "writeKey": "TOKEN"}', (), "body"),
        (b"/echoco/send", b"", b'{"writeKey": "TOKEN_json"}', (), "body"),
        (b"/echoco/send", b"", b"to=a&writeKey=TOKEN_pct", (), "body"),
        (b"/echoco/messages/TOKEN/details", b"", b"", (), "path"),
        (b"/echoco/messages/TOKEN_pct", b"", b"", (), "path"),
        (b"/echoco/send", b"", b"", (("user-agent", "agent TOKEN"),), "user-agent header"),
        (b"/echoco/send", b"", b"", (("accept-language", "TOKEN"),), "accept-language header"),
        (b"/echoco/send", b"", b"", (("x-fwd", "TOKEN_pct"),), "x-fwd header"),
    ],
)
def test_the_vault_key_anywhere_forwarded_is_refused_naming_where(
    path: bytes, query: bytes, body: bytes, headers: tuple[tuple[str, str], ...], where: str
) -> None:
    token = "vault_key_" + "a1" * 16
    pct = quote(token, safe="").replace("_", "%5F")
    esc = "".join(f"\\u{ord(c):04x}" for c in token)

    def place(raw: bytes) -> bytes:
        return (
            raw.replace(b"TOKEN_pct", pct.encode())
            .replace(b"TOKEN_json", esc.encode())
            .replace(b"TOKEN", token.encode())
        )

    vendor = built(INJECTIONS[1], forward=("x-fwd",))
    spelled = tuple((k, place(v.encode()).decode()) for k, v in headers)
    with pytest.raises(Denial) as exc:
        check_vault_key_placement(token, _request(place(path), place(query), spelled), vendor, place(body))
    assert exc.value.code == "key_ambiguous" and f"request's {where}:" in exc.value.message
    # another string, or the key in a header that is not forwarded: fine
    other = _request(b"/echoco/m/vault_key_other", b"writeKey=vault_key_other", (("x-private", token),))
    check_vault_key_placement(token, other, vendor, b'{"to": "a"}')


# -- through a running Keybrake ---------------------------------------------------------------


class EchoVendor(FakeServer):
    """Answers every request with its own URL in the body, in an error message and in a `Link`."""

    name = "fake-echo"

    async def handle(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        url = str(request.url)
        doc = {"request_url": url, "error": {"message": f"cannot parse {url}"}, "headers": recorded.headers}
        return web.json_response(doc, headers={"Link": f"<{url}&page=2>; rel=next"})


@pytest.fixture
def echo() -> Iterator[EchoVendor]:
    with FakeThread(EchoVendor()) as t:
        yield t.fake


@pytest.fixture(params=[0, 1, 3], ids=["query", "header", "basic"])
def kbe(request: pytest.FixtureRequest, tmp_path: Path, echo: EchoVendor) -> Iterator[KeybrakeThread]:
    vendors = tmp_path / "vendor-files"
    vendors.mkdir(mode=0o755)
    path = vendors / "echoco.toml"
    path.write_text(echoco(INJECTIONS[request.param]))
    path.chmod(0o644)
    load.install(vendors, explicit=True)
    try:
        with KeybrakeThread(tmp_path / "data") as server:
            server.add_credential(echo.base_url, name="echoco", secret=SECRET, vendor="echoco")
            yield server
    finally:
        load.uninstall()


def test_the_operator_secret_echoed_by_the_vendor_never_reaches_the_agent(
    kbe: KeybrakeThread, echo: EchoVendor
) -> None:
    key = kbe.issue({"daily_usd_cap": 1}, vendor="echoco")
    r = httpx.get(f"{kbe.url}/echoco/things", params={"page": "1"}, headers={"X-Echo-Key": key["key"]}, timeout=30)
    assert r.status_code == 200 and len(echo.requests) == 1
    reached = echo.requests[0]
    basic = reached.headers.get("authorization", " ").split(" ")[1]
    got = reached.query + json.dumps(reached.headers) + base64.b64decode(basic + "==").decode("latin-1")
    assert SECRET in got  # the vendor got it
    for spelled in (SECRET, quote(SECRET, safe="")):
        assert spelled not in r.text and spelled not in json.dumps(dict(r.headers)), r.text
    assert REDACTED in r.text  # the echo is there, redacted


def test_the_vault_key_in_query_body_path_or_header_never_leaves(kbe: KeybrakeThread, echo: EchoVendor) -> None:
    key = kbe.issue({"daily_usd_cap": 1}, vendor="echoco")
    h = {"X-Echo-Key": key["key"]}
    a = httpx.post(f"{kbe.url}/echoco/send", params={"writeKey": key["key"]}, json={"to": "a"}, headers=h, timeout=30)
    b = httpx.post(f"{kbe.url}/echoco/send", json={"to": "a", "writeKey": key["key"]}, headers=h, timeout=30)
    c = httpx.get(f"{kbe.url}/echoco/messages/{key['key']}/details", headers=h, timeout=30)
    d = httpx.get(f"{kbe.url}/echoco/things", headers={**h, "User-Agent": f"agent {key['key']}"}, timeout=30)
    for r, where in ((a, "query string"), (b, "body"), (c, "path"), (d, "user-agent header")):
        assert r.status_code == 400 and r.json()["error"] == "key_ambiguous", r.text
        assert f"request's {where}:" in r.json()["message"]
    assert echo.requests == []
    ok = httpx.post(f"{kbe.url}/echoco/send", json={"to": ["a", "b"]}, headers=h, timeout=30)
    assert ok.status_code == 200 and len(echo.requests) == 1


def test_stripe_and_resend_never_forward_the_vault_key(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    auth = {"Authorization": f"Bearer {key['key']}"}
    q = httpx.get(f"{kb.url}/stripe/v1/customers", params={"email": key["key"]}, headers=auth, timeout=30)
    form = {"email": "a@b.io", "metadata[note]": key["key"]}
    b = httpx.post(f"{kb.url}/stripe/v1/customers", data=form, headers=auth, timeout=30)
    for r in (q, b):
        assert r.status_code == 400 and r.json()["error"]["code"] == "key_ambiguous", r.text
    assert fake_stripe.requests == []
    with FakeResendThread() as t:
        kb.add_credential(t.fake.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        rkey = kb.issue({"daily_usd_cap": 1}, vendor="resend")
        mail = {"from": "bot@mail.acme.io", "to": "a@example.com", "subject": "x", "html": rkey["key"]}
        r = httpx.post(f"{kb.url}/resend/emails", json=mail, headers={"Authorization": f"Bearer {rkey['key']}"})
        assert r.status_code == 400 and r.json()["name"] == "key_ambiguous", r.text
        fake: FakeResend = t.fake
        assert fake.requests == []
