"""A configured vendor's decisions, option by option (docs/vendors.md, vendors defined by a file):
item counts, amounts through the rate table, settlement from the answer, credential injection,
the vault key's header, the error template and the request's one parse."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.proxy.auth import extract_token
from keybrake.tokens import VAULT_PREFIX, new_token
from keybrake.vendors.base import retry_after
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.load import spec_of
from keybrake.vendors.configured.vendor import ConfiguredVendor
from tests.vendors.configured_toml import dumps
from tests.vendors.one_parse_gen import props

pytestmark = pytest.mark.store_free
RATES = {"usd": Decimal(1), "eur": Decimal("1.10"), "jpy": Decimal("0.0067")}
MAIL = {"match": "POST /mail", "pricing": "per_item", "usd": "0.001"}


def vendor(**over: Any) -> ConfiguredVendor:
    doc: dict[str, Any] = {
        "format": 1,
        "name": "mailco",
        "base_url": "https://api.mailco.example",
        "upstream_hosts": ["api.mailco.example"],
        "credential": {"inject": "bearer"},
        "error": {"body": {"Message": "{message}", "ErrorCode": "{code}"}},
        "endpoint": [{**MAIL, "items": {"count": "addresses", "paths": ["To", "Cc"]}}],
    }
    doc.update(over)
    spec = spec_of(parse_definition(dumps(doc), "mailco.toml", "mailco"))
    built = spec.build(spec.values({}))
    assert isinstance(built, ConfiguredVendor)
    return built


def call(v: ConfiguredVendor, method: str, path: str, body: Any = None, *, ctype: str = "application/json",
         query: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> Any:  # fmt: skip
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    hdrs = (*headers, ("content-type", ctype)) if raw else headers
    req = ProxyRequest(method, path.encode(), query, hdrs, raw, "127.0.0.1")
    return v.parse(req, v.canonical(method, tuple(s for s in path.split("/") if s)))


def denied(fn: Any, *args: Any, **kw: Any) -> Denial:
    with pytest.raises(Denial) as exc:
        fn(*args, **kw)
    return exc.value


def test_addresses_are_counted_as_email_headers_list_them() -> None:
    v = vendor()
    doc = {"To": 'a@x.io, "Doe, Jane" <j@y.io>', "Cc": ["c@z.io"]}
    vreq = call(v, "POST", "/mail", doc)
    est = v.estimate(vreq, RATES)
    assert (est.pricing, est.amount) == ("priced", 3_000)  # three recipients at $0.001
    assert denied(call, v, "POST", "/mail", {"To": "a@x.io,, b@y.io"}).code == "body_invalid"
    assert denied(call, v, "POST", "/mail", {"To": "not an address"}).code == "scope_violation"
    objects = vendor(endpoint=[{**MAIL, "items": {"count": "addresses", "paths": ["to"], "address_field": "addr"}}])
    vreq = call(objects, "POST", "/mail", {"to": [{"addr": "a@x.io", "name": "A"}, {"addr": "b@x.io"}]})
    assert objects.estimate(vreq, RATES).amount == 2_000


def test_a_null_field_is_absent_but_a_null_entry_is_refused() -> None:
    v = vendor()  # postmarker sends every unset field as null
    assert v.estimate(call(v, "POST", "/mail", {"To": "a@x.io", "Cc": None}), RATES).amount == 1_000
    assert denied(call, v, "POST", "/mail", {"To": ["a@x.io", None]}).code == "body_invalid"
    values = vendor(endpoint=[{**MAIL, "items": {"count": "values", "paths": ["[*].To"]}}])
    assert values.estimate(call(values, "POST", "/mail", [{"To": "a"}, {"To": None}]), RATES).amount == 1_000


def test_array_length_and_values_counts() -> None:
    v = vendor(endpoint=[{**MAIL, "items": {"count": "array_length", "paths": ["batch"]}, "sends": "items"}])
    est = v.estimate(call(v, "POST", "/mail", {"batch": [{}, {}, {}]}), RATES)
    assert (est.amount, est.sends) == (3_000, 3)
    assert denied(call, v, "POST", "/mail", {"batch": {"a": 1}}).code == "body_invalid"  # not an array
    values = vendor(endpoint=[{**MAIL, "items": {"count": "values", "paths": ["[*].To"]}, "sends": 2}])
    est = values.estimate(call(values, "POST", "/mail", [{"To": "a"}, {"To": "b"}, {"Cc": "c"}]), RATES)
    assert (est.amount, est.sends) == (2_000, 2)


def test_amounts_are_priced_through_the_rate_table_and_rounded_up() -> None:
    money = {"path": "amount", "unit": "minor", "currency_path": "currency"}
    v = vendor(endpoint=[{"match": "POST /payouts", "pricing": "amount", "amount": money}])
    assert v.estimate(call(v, "POST", "/payouts", {"amount": 1999, "currency": "EUR"}), RATES).amount == 21_989_000
    assert v.estimate(call(v, "POST", "/payouts", {"amount": "500", "currency": "jpy"}), RATES).amount == 3_350_000
    assert denied(v.estimate, call(v, "POST", "/payouts", {"amount": 1, "currency": "gbp"}), RATES).code == (
        "currency_not_supported"
    )
    for bad in ({"amount": 1.5, "currency": "usd"}, {"amount": -1, "currency": "usd"}, {"currency": "usd"}):
        assert denied(call, v, "POST", "/payouts", bad).code == "body_invalid", bad
    major = vendor(endpoint=[{"match": "POST /p", "pricing": "amount", "amount": {"path": "x", "unit": "major",
                                                                                  "currency": "usd"}}])  # fmt: skip
    assert major.estimate(call(major, "POST", "/p", {"x": "12.3456789"}), RATES).amount == 12_345_679


def test_settlement_reads_the_answer_and_otherwise_the_estimate_stands() -> None:
    settle = {"path": "data.price", "unit": "major", "currency_path": "data.unit"}
    v = vendor(endpoint=[{**MAIL, "items": {"count": "values", "paths": ["To"]}, "settle": settle}])
    vreq = call(v, "POST", "/mail", {"To": "a@x.io"})
    est = v.estimate(vreq, RATES)
    paid = v.cost(vreq, est, 200, {}, {"data": {"price": "-0.0007", "unit": "USD"}}, RATES)
    assert (paid.cost_usd, paid.cost_source) == (700, "response")
    for doc in ({}, {"data": {"price": "n/a", "unit": "USD"}}, {"data": {"price": 1, "unit": "XXX"}}, None):
        stood = v.cost(vreq, est, 200, {}, doc, RATES)
        assert (stood.cost_usd, stood.cost_source) == (1_000, "estimate"), doc
    assert v.cost(vreq, est, 422, {}, {"data": {"price": "5", "unit": "USD"}}, RATES).cost_usd == 0
    plain = vendor()
    vreq = call(plain, "POST", "/mail", {"To": "a@x.io"})
    flat = plain.cost(vreq, plain.estimate(vreq, RATES), 200, {}, {}, RATES)
    assert (flat.cost_usd, flat.cost_source) == (1_000, "flat_rate")


def test_endpoints_not_listed_are_unpriceable_and_case_variants_of_listed_ones_refused() -> None:
    v = vendor()
    assert v.estimate(call(v, "POST", "/other", {"a": 1}), RATES).pricing == "unpriceable"
    assert denied(call, v, "POST", "/Mail", {"To": "a@x.io"}).code == "path_invalid"


@pytest.mark.parametrize(
    ("credential", "secret", "headers", "query"),
    [
        ({"inject": "bearer", "prefix": "mk_"}, "mk_123", [("authorization", "Bearer mk_123")], []),
        ({"inject": "header", "header": "X-Server-Token"}, "s3", [("x-server-token", "s3")], []),
        ({"inject": "query", "query": "api_key"}, "s3", [], [("api_key", "s3")]),
        ({"inject": "basic", "username": "{secret}", "password": ""}, "wk", [("authorization", "Basic d2s6")], []),
        (
            {"inject": "header", "header": "X-Auth", "fields": ["id", "key"], "value": "{id}:{key}"},
            {"id": "u1", "key": "k{id}"},
            [("x-auth", "u1:k{id}")],
            [],
        ),
    ],
)
def test_the_credential_is_injected_as_defined(credential: Any, secret: Any, headers: Any, query: Any) -> None:
    v = vendor(credential=credential)
    blob = v.validate_secret(secret).blob
    assert (v.upstream_headers(blob), v.upstream_query(blob)) == (headers, query)
    hint = v.validate_secret(secret).hint
    assert not any(part in hint for part in ([secret] if isinstance(secret, str) else secret.values()))


def test_secrets_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="starts with mk_"):
        vendor(credential={"inject": "bearer", "prefix": "mk_"}).validate_secret("sk_1")
    fields = vendor(credential={"inject": "basic", "fields": ["a", "b"], "username": "{a}", "password": "{b}"})
    for bad in ({"a": "1"}, {"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": ""}, "a:b"):
        with pytest.raises(ValueError):
            fields.validate_secret(bad)


def test_a_credential_query_parameter_from_the_agent_is_refused() -> None:
    v = vendor(credential={"inject": "query", "query": "api_key"})
    assert denied(call, v, "GET", "/mail", query=b"api_key=x").code == "param_ambiguous"


def test_the_vault_key_arrives_in_the_vendors_header() -> None:
    v = vendor(vault_key={"arrives": "header", "header": "X-Mailco-Token"})
    token = new_token(VAULT_PREFIX)
    req = ProxyRequest("GET", b"/mailco/x", b"", (("x-mailco-token", token),), b"", "127.0.0.1")
    assert v.vault_key_header == "x-mailco-token"
    assert extract_token(req, v.vault_key_header) == token
    assert denied(extract_token, req).code == "key_missing"  # another vendor does not read that header
    assert "x-mailco-token" not in v.forwarded_headers  # the agent's copy is never forwarded


def test_denials_fill_the_template() -> None:
    v = vendor(error={"body": {"errors": [{"message": "{message}", "help": "{code} ({status})"}],
                               "status": "{status}", "kb": "{keybrake}"}})  # fmt: skip
    body = v.render_denial(Denial("scope_violation", "out of scope"), {"key_id": "vk_1"}).body
    assert body == {
        "errors": [{"message": "out of scope", "help": "scope_violation (403)"}],
        "status": 403,
        "kb": {"key_id": "vk_1"},
    }
    cap = Denial("spend_cap_exceeded", "cap")
    plain = vendor().render_denial(cap, {"key_id": "vk_1"})
    assert plain.body == {"Message": "cap", "ErrorCode": "spend_cap_exceeded", "keybrake": {"key_id": "vk_1"}}
    assert plain.headers == retry_after(cap)


def test_the_one_parse_of_bodies_and_queries() -> None:
    v = vendor()
    assert denied(call, v, "POST", "/mail", b"To=a%40x.io", ctype="application/x-www-form-urlencoded").code == (
        "unsupported_media_type"
    )
    assert denied(call, v, "POST", "/mail", {"To": "a@x.io"}, query=b"To=b%40y.io").code == "param_ambiguous"
    assert denied(call, v, "POST", "/mail", {"to": "a@x.io"}).code == "body_invalid"  # a near miss of `To`
    assert denied(call, v, "POST", "/mail", b'{"To": "a@x.io", "To": "b@y.io"}').code == "body_invalid"
    for other_shape in ([{"To": "a@x.io"}], "a@x.io", 5):  # no path of this definition would read them
        assert denied(call, v, "POST", "/mail", other_shape).code == "body_invalid"
    insensitive = vendor(request={"json_keys": "case_insensitive"})
    vreq = call(insensitive, "POST", "/mail", {"TO": "a@x.io, b@x.io"})
    assert insensitive.estimate(vreq, RATES).amount == 2_000
    assert denied(call, insensitive, "POST", "/mail", {"Ｔｏ": "a@x.io"}).code == "body_invalid"
    a = call(v, "POST", "/mail", {"To": "a@x.io", "Subject": "s"})
    b = call(v, "POST", "/mail", b'{"Subject":"s","To":"a@x.io"}')
    assert v.fingerprint(a) == v.fingerprint(b) and v.dedup_fingerprint(a) == v.dedup_fingerprint(b)


def test_scope_fields_by_match_kind() -> None:
    scopes = [
        {"field": "allowed_to_domains", "match": "email_domain", "paths": ["To", "Cc"]},
        {"field": "allowed_streams", "match": "prefix", "paths": ["Stream"], "required": True},
    ]
    v = vendor(scope=scopes)
    policy = Policy(vendor_data={"allowed_to_domains": ["x.io", "*.y.io"], "allowed_streams": ["tx-"]})
    ok = call(v, "POST", "/mail", {"To": "a@x.io, b@sub.y.io", "Stream": "tx-1"})
    v.check_scope(policy, ok)
    for doc in ({"To": "a@evil.io", "Stream": "tx-1"}, {"To": "a@x.io", "Stream": "bulk"}, {"To": "a@x.io"}):
        assert denied(v.check_scope, policy, call(v, "POST", "/mail", doc)).code == "scope_violation", doc
    v.check_scope(Policy(), call(v, "POST", "/mail", {"To": "a@evil.io"}))  # no field set: no check
    assert {"allowed_to_domains", "allowed_streams"} <= v.policy_fields


_SCOPED = vendor(
    endpoint=[{**MAIL, "items": {"count": "addresses", "paths": ["To"]}, "sends": "items"}],
    scope=[{"field": "allowed_to_domains", "match": "email_domain", "paths": ["To"]}],
)


@given(
    path=st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=4).filter(lambda p: p != ["mail"]),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    domains=st.none() | st.just(["x.io"]),
    cap=st.none() | st.integers(0, 5),
)
def test_an_unlisted_endpoint_is_refused_on_a_key_that_scopes_or_caps_sends(
    path: list[str], method: str, domains: list[str] | None, cap: int | None
) -> None:
    """Fail closed: what an endpoint the definition does not list sends, and to whom, cannot be read,
    so a key setting any scope field or daily_send_cap refuses it; a key setting neither does not."""
    data = {"allowed_to_domains": domains} if domains is not None else {}
    policy = Policy(daily_send_cap=cap, vendor_data=data)
    vreq = call(_SCOPED, method, "/" + "/".join(path), {"To": "a@x.io"} if method != "GET" else None)
    if domains is None and cap is None:
        assert _SCOPED.check_scope(policy, vreq) is not None
        return
    d = denied(_SCOPED.check_scope, policy, vreq)
    assert (d.code, d.status) == ("scope_violation", 403) and "not described by the" in d.message
    assert ("allowed_to_domains" in d.message) == (domains is not None)
    assert ("daily_send_cap" in d.message) == (cap is not None)
    _SCOPED.check_scope(policy, call(_SCOPED, "POST", "/mail", {"To": "a@x.io"}))  # a listed one is read


def test_what_is_forwarded_carries_the_credential_and_drops_the_agents_copy() -> None:
    from keybrake.core.upstream import UpstreamRequest
    from keybrake.proxy.decide import Route, upstream_request

    v = vendor(
        credential={"inject": "query", "query": "api_key"},
        vault_key={"arrives": "header", "header": "X-Mailco-Token"},
        request={"forward_headers": ["x-mailco-version"], "idempotency_header": "Idempotency-Key"},
    )
    token = new_token(VAULT_PREFIX)
    headers = (("x-mailco-token", token), ("x-mailco-version", "2"), ("idempotency-key", "k1"), ("x-other", "1"))
    req = ProxyRequest("GET", b"/mailco/mail", b"limit=1", headers, b"", "127.0.0.1")
    vreq = call(v, "GET", "/mail", query=b"limit=1", headers=headers)
    blob = v.validate_secret("s3cr3t&x=1").blob
    sent = upstream_request(req, Route(v, ("mail",), b"/mail", {}), vreq, blob, "https://api.mailco.example", "vk")
    assert isinstance(sent, UpstreamRequest), sent
    assert sent.url == "https://api.mailco.example/mail?limit=1&api_key=s3cr3t%26x%3D1"
    names = [k for k, _ in sent.headers]
    assert "x-mailco-version" in names and "idempotency-key" in names
    assert "x-mailco-token" not in names and "x-other" not in names and token not in str(sent.headers)


def test_the_definitions_idempotency_header_is_the_retry_key() -> None:
    from keybrake.proxy.decisions import read_idempotency_key

    v = vendor(request={"idempotency_header": "X-Idem-Key"})
    req = ProxyRequest("POST", b"/mailco/mail", b"", (("x-idem-key", "k1"),), b"", "127.0.0.1")
    assert read_idempotency_key(req, v) == "k1" and "x-idem-key" in v.forwarded_headers
    twice = ProxyRequest("POST", b"/mailco/mail", b"", (("x-idem-key", "a"), ("x-idem-key", "b")), b"", "1")
    assert denied(read_idempotency_key, twice, v).code == "header_invalid"
    assert read_idempotency_key(ProxyRequest("POST", b"/", b"", (("idempotency-key", "k"),), b"", "1"), v) is None


def test_the_vault_key_and_the_credential_may_share_a_header() -> None:
    """Postmark's X-Postmark-Server-Token: the agent's vault key arrives in it, the real token
    replaces it (the agent's copy is never forwarded)."""
    from keybrake.core.upstream import UpstreamRequest
    from keybrake.proxy.decide import Route, upstream_request

    v = vendor(
        credential={"inject": "header", "header": "X-Server-Token"},
        vault_key={"arrives": "header", "header": "X-Server-Token"},
    )
    token = new_token(VAULT_PREFIX)
    req = ProxyRequest("GET", b"/mailco/mail", b"", (("x-server-token", token),), b"", "127.0.0.1")
    assert extract_token(req, v.vault_key_header) == token
    sent = upstream_request(req, Route(v, ("mail",), b"/mail", {}), call(v, "GET", "/mail"), b"real", "https://h", "k")
    assert isinstance(sent, UpstreamRequest)
    assert [v for k, v in sent.headers if k == "x-server-token"] == ["real"]


def test_refused_headers_and_forbidden_values() -> None:
    forbid = {"paths": ["Headers[*].Name", "[*].Headers[*].Name"], "values": ["Bcc", "resent-*"], "why": "recipients"}
    v = vendor(request={"refuse_headers": ["on-behalf-of"]}, forbid=[forbid])
    refused = denied(call, v, "POST", "/mail", {"To": "a@x.io"}, headers=(("on-behalf-of", "sub"),))
    assert refused.code == "header_invalid" and "on-behalf-of" in refused.message
    for name in ("BCC", " bcc ", "Resent-To"):
        doc = {"To": "a@x.io", "Headers": [{"Name": "X-Tag", "Value": "1"}, {"Name": name, "Value": "s@evil.io"}]}
        d = denied(call, v, "POST", "/mail", doc)
        assert d.code == "scope_violation" and "Headers[*].Name may not be" in d.message and "(recipients)" in d.message
    batch = [{"To": "a@x.io", "Headers": [{"Name": "bcc", "Value": "s@evil.io"}]}]
    assert denied(call, v, "POST", "/mail", batch).code == "scope_violation"
    call(v, "POST", "/mail", {"To": "a@x.io", "Headers": [{"Name": "X-Resent", "Value": "1"}]})  # allowed
    with pytest.raises(Exception, match=r"forbid\[0\].values\[0\]: a value is text"):
        vendor(forbid=[{**forbid, "values": ["b*c"]}])
    with pytest.raises(Exception, match=r"request\.refuse_headers: 'idempotency-key' is also a header"):
        vendor(request={"refuse_headers": ["idempotency-key"], "idempotency_header": "Idempotency-Key"})


def test_a_trailing_slash_is_the_same_operation_only_where_the_definition_says_so() -> None:
    from keybrake.proxy.decide import Route, route
    from keybrake.store.records import KeyRecord

    plain, slash = vendor(), vendor(request={"trailing_slash": True})
    key = KeyRecord.__new__(KeyRecord)
    object.__setattr__(key, "vendor", "mailco")
    req = ProxyRequest("POST", b"/mailco/mail/", b"", (), b"", "127.0.0.1")
    routed = route(req, key, {"mailco": slash})
    assert isinstance(routed, Route) and (routed.segments, routed.raw_rest) == (("mail",), b"/mail/")
    refused = route(req, key, {"mailco": plain})
    assert not isinstance(refused, Route) and refused.denial.code == "path_invalid"
    assert not isinstance(
        route(ProxyRequest("POST", b"/mailco/mail//", b"", (), b"", "1"), key, {"mailco": slash}), Route
    )


def test_the_error_content_type_is_the_vendors() -> None:
    from keybrake.proxy.render import denial_response

    problem = vendor(
        error={"body": {"title": "{code}", "detail": "{message}"}, "content_type": "application/problem+json"}
    )
    sent = denial_response(Denial("scope_violation", "no"), problem, request_id="r", key_id="k", now_ms=0)
    assert [v for k, v in sent.headers if k == "content-type"] == ["application/problem+json"]
    sent = denial_response(Denial("scope_violation", "no"), vendor(), request_id="r", key_id="k", now_ms=0)
    assert [v for k, v in sent.headers if k == "content-type"] == ["application/json; charset=utf-8"]
    with pytest.raises(Exception, match=r"error\.content_type: the body is sent as JSON"):
        vendor(error={"body": {"a": "{code} {message}"}, "content_type": "text/html"})


AMOUNT = vendor(endpoint=[{"match": "POST /p", "pricing": "amount",
                           "amount": {"path": "amount", "unit": "minor", "currency_path": "currency"}}])  # fmt: skip
EXPONENTS = {"usd": 2, "eur": 2, "jpy": 0, "kwd": 3}  # ISO 4217 minor units


@props(400)
@given(minor=st.integers(0, 10**12), currency=st.sampled_from(sorted(EXPONENTS)), as_text=st.booleans())
def test_an_amount_reserves_at_least_what_it_moves_in_usd(minor: int, currency: str, as_text: bool) -> None:
    rates = {**RATES, "kwd": Decimal("3.25")}
    doc = {"amount": str(minor) if as_text else minor, "currency": currency.upper()}
    reserved = AMOUNT.estimate(call(AMOUNT, "POST", "/p", doc), rates).amount
    exact = Decimal(minor) / 10 ** EXPONENTS[currency] * rates[currency] * 1_000_000
    assert exact <= reserved < exact + 1  # rounded up to the micro-dollar, never down
