"""MCP tool calls against the vendors' own SDKs (docs/mcp.md: "each tool call becomes exactly the
request the vendor's official SDK would make"), differentially: for arguments valid against each
tool's input schema (tests/vendors/tool_args.py), `build_request` must produce the method, path,
query or body and Idempotency-Key that stripe-python, twilio-python and resend-python send for
the same call (tests/vendors/vendor_sdks.py records them); Keybrake's own route and parse must
accept that request and read exactly the arguments; a path parameter is one path segment or the
call is refused. Arguments a schema admits that Keybrake then refuses or misreads are the strict
`test_gap_*` cases (each fails once the schema or the parse is changed to agree).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl, unquote

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.request import ProxyRequest
from keybrake.proxy.decide import Refusal, parse, route
from keybrake.store.records import KeyRecord
from keybrake.vendors import build_vendors
from keybrake.vendors.tool_catalog import RESEND_TOOLS, STRIPE_TOOLS, TWILIO_TOOLS
from keybrake.vendors.tools import (
    IDEMPOTENCY_ARG,
    Tool,
    ToolInputError,
    ToolRequest,
    build_request,
    derived_idempotency_key,
)
from tests.vendors.tool_args import MAP_KEY, PLAIN, TEXT, Gen, tool_args
from tests.vendors.vendor_sdks import ACCOUNT_SID, STRIPE_CALLS, resend_sent, stripe_sent, twilio_sent

ALL_TOOLS = (*STRIPE_TOOLS, *TWILIO_TOOLS, *RESEND_TOOLS)
VENDORS = build_vendors()
KEY_ID = "key_tooldiff"


def _ids(tools: tuple[Tool, ...]) -> list[Any]:
    return [pytest.param(t, id=t.name) for t in tools]


def _split_args(tool: Tool, args: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """(the path id or "", the vendor parameters, the idempotency key or None)."""
    params = dict(args)
    path_ids = [params.pop(p) for p in tool.path_params]
    assert len(path_ids) <= 1, tool.name
    idem = params.pop(IDEMPOTENCY_ARG, None) if tool.idempotent else None
    return (path_ids[0] if path_ids else ""), params, idem


def _as_sent(client_key: str) -> str:
    """A client's idempotency key as the tool sends it: hashed with the vault key's id."""
    return derived_idempotency_key(KEY_ID, "", {IDEMPOTENCY_ARG: client_key})


def _valid(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    jsonschema.validate(args, tool.input_schema(), cls=jsonschema.Draft202012Validator)
    return args


def test_every_stripe_tool_has_its_sdk_call() -> None:
    assert sorted(STRIPE_CALLS) == sorted(t.name for t in STRIPE_TOOLS)


# --- Stripe: stripe-python's StripeClient -------------------------------------------------------

# Undeclared parameters as an agent might pass them. Not a list of booleans: stripe-python sends
# `[True]` as `x[0]=True` (its encoder lower-cases only a top-level or object-member bool), where
# Keybrake sends `x[0]=true`, the spelling Stripe documents.
_STRIPE_EXTRA = st.one_of(
    PLAIN,
    st.dictionaries(MAP_KEY, PLAIN, max_size=3),
    st.lists(st.one_of(TEXT, st.integers(-(10**12), 10**12)), max_size=3),
    st.lists(st.dictionaries(MAP_KEY, PLAIN, min_size=1, max_size=3), max_size=2),
)


@pytest.mark.parametrize("tool", _ids(STRIPE_TOOLS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_stripe_tool_sends_what_stripe_python_sends(tool: Tool, data: st.DataObject) -> None:
    args = _valid(tool, data.draw(tool_args(tool, extra_value=_STRIPE_EXTRA)))
    built = build_request(tool, args, KEY_ID)
    path_id, params, idem = _split_args(tool, args)
    sent = stripe_sent(tool.name, path_id, params, idem)
    assert (built.method, built.raw_path) == (sent.method, b"/stripe" + sent.path.encode())
    # stripe-python writes `[` and `]` unescaped (its "easier to read" form): the same pairs, byte for byte.
    mine = (built.query if built.method in ("GET", "DELETE") else built.body).decode()
    assert mine.replace("%5B", "[").replace("%5D", "]") == (sent.query or sent.body.decode())
    assert built.body == b"" if built.method in ("GET", "DELETE") else built.query == b""
    assert built.content_type == sent.headers.get("content-type")
    if idem is not None:
        # The SDK sends the client's value; Keybrake sends it as this vault key's own (docs/mcp.md).
        assert sent.headers["idempotency-key"] == idem and built.idempotency_key == _as_sent(idem)


def test_stripe_list_of_booleans_is_sent_in_stripes_spelling() -> None:
    """The one encoding that differs from stripe-python, on purpose (see _STRIPE_EXTRA)."""
    tool = next(t for t in STRIPE_TOOLS if t.name == "stripe_create_customer")
    built = build_request(tool, {"flags": [True, False], "nested": {"on": True}}, KEY_ID)
    assert parse_qsl(built.body.decode()) == [("flags[0]", "true"), ("flags[1]", "false"), ("nested[on]", "true")]
    sent = stripe_sent(tool.name, "", {"flags": [True, False], "nested": {"on": True}}, None)
    assert parse_qsl(sent.body.decode()) == [("flags[0]", "True"), ("flags[1]", "False"), ("nested[on]", "true")]


# --- Twilio: twilio-python's Client -------------------------------------------------------------

# Documented parameters the tools do not declare, which twilio-python takes by keyword.
_TWILIO_EXTRA = {
    "twilio_send_sms": {"StatusCallback": TEXT, "ContentSid": TEXT, "PersistentAction": st.lists(TEXT, max_size=3)},
    "twilio_place_call": {
        "StatusCallback": TEXT,
        "SendDigits": TEXT,
        "StatusCallbackEvent": st.lists(st.sampled_from(["initiated", "ringing", "answered", "completed"])),
    },
}


def _grouped(form: str) -> dict[str, list[str]]:
    """Form pairs by name, each name's values in order (twilio-python orders names its own way)."""
    out: dict[str, list[str]] = defaultdict(list)
    for k, v in parse_qsl(form, keep_blank_values=True, strict_parsing=bool(form)):
        out[k].append(v)
    return dict(out)


@pytest.mark.parametrize("tool", _ids(TWILIO_TOOLS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_twilio_tool_sends_what_twilio_python_sends(tool: Tool, data: st.DataObject) -> None:
    args = _valid(tool, data.draw(tool_args(tool, extras=False)))
    extra = _TWILIO_EXTRA.get(tool.name, {})
    args.update(data.draw(st.fixed_dictionaries({}, optional=extra)))
    built = build_request(tool, args, ACCOUNT_SID)
    path_id, params, idem = _split_args(tool, args)
    assert idem is None and built.idempotency_key is None  # Twilio has no idempotency key
    sent = twilio_sent(tool.name, path_id, params)
    assert built.method == sent.method
    # twilio-python puts a Sid into the path as given; Keybrake percent-encodes it: one segment, same id.
    assert [unquote(s) for s in built.raw_path.decode().split("/")] == ["", "twilio", *sent.path.split("/")[1:]]
    assert built.query.decode() == sent.query
    assert _grouped(built.body.decode()) == _grouped(sent.body.decode())
    assert built.content_type == sent.headers.get("content-type")


# --- Resend: resend-python ----------------------------------------------------------------------


@pytest.mark.parametrize("tool", _ids(RESEND_TOOLS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_resend_tool_sends_what_resend_python_sends(tool: Tool, data: st.DataObject) -> None:
    args = _valid(tool, data.draw(tool_args(tool)))
    built = build_request(tool, args, KEY_ID)
    _, params, idem = _split_args(tool, args)
    body = params if tool.array_arg is None else params[tool.array_arg]
    assert json.loads(built.body) == body  # the arguments, less idempotency_key; a batch is the array
    sent = resend_sent(tool.name, body, idem)
    assert (built.method, built.raw_path, built.query) == (sent.method, b"/resend" + sent.path.encode(), b"")
    assert json.loads(built.body) == json.loads(sent.body)
    assert built.content_type == "application/json"
    if idem is not None:
        # The SDK sends the client's value; Keybrake sends it as this vault key's own (docs/mcp.md).
        assert sent.headers["idempotency-key"] == idem and built.idempotency_key == _as_sent(idem)


# --- Keybrake's own route and parse read exactly the arguments ----------------------------------


def _key(vendor: str) -> KeyRecord:
    return KeyRecord(KEY_ID, vendor, "default", None, {}, {}, 1, "active", 0, 2**40, None, None, None)


def _as_proxy_request(tool: Tool, built: ToolRequest) -> ProxyRequest:
    """The request keybrake.mcp hands the pipeline for this call (its headers, less the token)."""
    headers = [("content-type", built.content_type)] if built.content_type else []
    if built.idempotency_key is not None:
        headers.append((VENDORS[tool.vendor].idempotency_header, built.idempotency_key))
    return ProxyRequest(built.method, built.raw_path, built.query, tuple(headers), built.body, "127.0.0.1")


def _flat(value: Any, path: tuple[str, ...], out: dict[str, list[str]]) -> None:
    """The parameters a vendor reads from `value`: dotted names (a list's index dropped), values as text."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(v, (*path, k), out)
    elif isinstance(value, list):
        for v in value:
            _flat(v, path, out)
    else:
        text = value if isinstance(value, str) else json.dumps(value)
        out.setdefault(".".join(path), []).append(text)


def _expected(tool: Tool, args: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    _, params, _ = _split_args(tool, args)
    out: dict[str, list[str]] = {}
    _flat(params[tool.array_arg] if tool.array_arg else params, (), out)
    return {k: tuple(v) for k, v in out.items()}


# Values each vendor itself requires, which Keybrake's parse reads for scope and cost: real
# addresses (Resend), E.164 numbers and a text (Twilio). Not generated here: the gaps below.
_ADDRESS = st.builds(
    lambda user, domain, name: f"{name} <{user}@{domain}>" if name else f"{user}@{domain}",
    st.from_regex(r"[a-z0-9_+-]{1,8}(\.[a-z0-9_+-]{1,8})?", fullmatch=True),
    st.sampled_from(["example.com", "mail.example.org"]),
    st.sampled_from(["", "Ann", "Bo Li"]),
)
_ADDRESSES = st.one_of(_ADDRESS, st.lists(_ADDRESS, min_size=1, max_size=3))
_E164 = st.from_regex(r"\+[1-9][0-9]{7,13}", fullmatch=True)
_NOT_INDEX = MAP_KEY.filter(lambda k: not k.isdigit())
_READABLE = Gen(
    map_key=_NOT_INDEX,
    fields={
        **dict.fromkeys(["to", "cc", "bcc", "reply_to"], _ADDRESSES),
        "from": _ADDRESS,
        "To": _E164,
        "From": _E164,
        "Body": TEXT.filter(str.strip),
        "Sid": st.from_regex(r"[A-Za-z0-9_:-]{1,34}", fullmatch=True),
        IDEMPOTENCY_ARG: st.from_regex(r"[!-~][ -~]{0,40}", fullmatch=True),
    },
)
_READABLE_EXTRA = {
    "form_nested": st.one_of(
        PLAIN,
        st.dictionaries(_NOT_INDEX, PLAIN, max_size=3),
        st.lists(st.one_of(TEXT, st.integers()), max_size=3),
        st.lists(st.dictionaries(_NOT_INDEX, PLAIN, min_size=1, max_size=3), max_size=2),
    ),
    "form_repeat": PLAIN,  # Twilio repeats only the names it documents as lists
    "json": st.one_of(PLAIN, st.dictionaries(_NOT_INDEX, PLAIN, max_size=3), st.lists(PLAIN, max_size=3)),
    "json_array": PLAIN,
}


def _proxy_reads(tool: Tool, args: dict[str, Any]) -> tuple[str, dict[str, tuple[str, ...]], str | None]:
    """Keybrake's route and parse of the call: ("ok", parameters, Idempotency-Key) or the refusal's code."""
    built = build_request(tool, args, KEY_ID)
    req = _as_proxy_request(tool, built)
    where = route(req, _key(tool.vendor), VENDORS)
    if isinstance(where, Refusal):
        return where.denial.code, {}, None
    assert list(where.segments) == [unquote(s) for s in built.raw_path.decode().split("/")[2:]]
    parsed = parse(req, where, None, b"pepper")
    if isinstance(parsed, Refusal):
        return parsed.denial.code, {}, None
    return "ok", parsed.vreq.params.values, parsed.notes["idempotency_key"]


@pytest.mark.parametrize("tool", _ids(ALL_TOOLS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_keybrake_parses_what_the_tool_sends(tool: Tool, data: st.DataObject) -> None:
    args = _valid(tool, data.draw(tool_args(tool, extra_value=_READABLE_EXTRA[tool.body], gen=_READABLE)))
    args.update(data.draw(st.fixed_dictionaries({}, optional=_TWILIO_EXTRA.get(tool.name, {}))))
    if tool.name == "twilio_send_sms" and not args.get("MediaUrl"):
        args.setdefault("Body", "Hello")  # Twilio sends nothing without a Body, MediaUrl or ContentSid
    verdict, values, idem = _proxy_reads(tool, args)
    assert verdict == "ok"
    assert values == _expected(tool, args)
    assert idem == build_request(tool, args, KEY_ID).idempotency_key


# --- Gaps: arguments the input schema admits, build_request sends, and Keybrake refuses or misreads.
# Each is strict: it fails (XPASS) once the schema or the parse is changed to agree.


def _tool(name: str) -> Tool:
    return next(t for t in ALL_TOOLS if t.name == name)


def _admitted_then_read(tool: Tool, args: dict[str, Any]) -> bool:
    """The schema refuses `args`, or Keybrake reads exactly them."""
    if not jsonschema.Draft202012Validator(tool.input_schema()).is_valid(args):
        return True
    verdict, values, _ = _proxy_reads(tool, args)
    return verdict == "ok" and values == _expected(tool, args)


@pytest.mark.parametrize("key", ["\u00e9t\u00e9-1", " ", "tab\there"])
def test_gap_idempotency_key_text(key: str) -> None:
    tool = _tool("stripe_create_customer")
    assert _admitted_then_read(tool, {IDEMPOTENCY_ARG: key})


@pytest.mark.xfail(strict=True, reason="Stripe metadata keys of digits only are read as list indices")
@pytest.mark.parametrize("metadata", [{"1": "a"}, {"0": "a", "order": "b"}])
def test_gap_stripe_metadata_digit_keys(metadata: dict[str, str]) -> None:
    assert _admitted_then_read(_tool("stripe_create_customer"), {"metadata": metadata})


def test_gap_twilio_sid_with_a_dot() -> None:
    assert _admitted_then_read(_tool("twilio_fetch_message"), {"Sid": "SM1.2"})


def test_gap_resend_empty_to() -> None:
    assert _admitted_then_read(_tool("resend_send_email"), {"from": "a@example.com", "to": [], "subject": "s"})


def test_gap_twilio_sms_without_content() -> None:
    assert _admitted_then_read(_tool("twilio_send_sms"), {"To": "+14155550100", "From": "+14155550101"})


# --- Path parameters are one segment ------------------------------------------------------------

_NASTY_IDS = st.sampled_from(
    [*".. . ... a/b %2F a%2Fb a%252Fb a?b a#b a\\b - : \uff41".split(), "a b", "a\nb", "pi_1\n", ""]
)
_PATH_TOOLS = tuple(t for t in ALL_TOOLS if t.path_params)


@pytest.mark.parametrize("tool", _ids(_PATH_TOOLS))
@settings(max_examples=300, deadline=None)
@given(ident=st.one_of(st.text(max_size=20), _NASTY_IDS, st.from_regex(r"[a-z_]{1,8}[./:%?#][a-z0-9.]{0,8}")))
def test_a_path_parameter_is_one_segment_or_refused(tool: Tool, ident: str) -> None:
    (name,) = tool.path_params
    try:
        built = build_request(tool, {name: ident}, KEY_ID)
    except ToolInputError as exc:
        assert repr(name) in str(exc)
        return
    template = tool.path.strip("/").split("/")
    got = built.raw_path.decode("ascii").split("/")
    assert got[:2] == ["", tool.vendor] and len(got) == len(template) + 2
    for seg, tmpl in zip(got[2:], template, strict=True):
        if "{" + name + "}" not in tmpl:
            assert seg == tmpl.replace("{key_id}", KEY_ID)
            continue
        prefix, suffix = tmpl.split("{" + name + "}")
        assert seg.startswith(prefix) and seg.endswith(suffix)
        encoded = seg[len(prefix) : len(seg) - len(suffix)]
        assert unquote(encoded) == ident  # exactly the id, once decoded: no double encoding
        assert "/" not in ident and "%" not in ident and ident.strip(".") != ""
        assert all(c.isalnum() or c in "%_-." for c in encoded)
