"""The vendor answer headers passed to the agent (proxy/outcome.py, `passed_headers`): every one
is writable by Keybrake's server (uvicorn's and h11's own checks), and every well-formed one is
kept. A header uvicorn refuses once made it drop the agent's connection after the charge was
settled (red team: `X-Evil: a\\x7fb`), so an agent retrying without an Idempotency-Key paid twice."""

from __future__ import annotations

import re

import h11
import pytest
from h11._headers import normalize_and_validate
from hypothesis import given
from hypothesis import strategies as st
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from keybrake.proxy.outcome import HOP_BY_HOP, passable, passed_headers
from tests.proxy.test_outcome import CHARGED, STRIPE_CHARGE, answer, run

pytestmark = pytest.mark.store_free

TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
FIELD_CHARS = {chr(c) for c in range(0x21, 0x7F)} | {chr(c) for c in range(0x80, 0x100)} | {" ", "\t"}


def writable(name: str, value: str) -> bool:
    """What the servers themselves accept: uvicorn's httptools writer and h11's validation."""
    try:
        n, v = name.encode("latin-1"), value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    if HEADER_RE.search(n) or HEADER_VALUE_RE.search(v):
        return False
    try:
        normalize_and_validate([(n, v)])
    except h11.LocalProtocolError:
        return False
    return True


def well_formed(name: str, value: str) -> bool:
    """RFC 9110, by character sets: a token name, a value of field-vchar, SP and HTAB."""
    return bool(name) and set(name) <= TCHAR and set(value) <= FIELD_CHARS


NAMES = st.one_of(
    st.from_regex(re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]{1,20}"), fullmatch=True),
    st.text(max_size=12),
    st.sampled_from(["X-Evil", "Bad Name", "x:y", "", "Request-Id", "Connection", "x-keybrake-cost", "é"]),
)
VALUES = st.one_of(
    st.text(alphabet=sorted(FIELD_CHARS), max_size=20),
    st.text(max_size=20),
    st.sampled_from(["a\x7fb", "a\x00b", "a\r\nX-Injected: 1", "a\nb", "\x01", "caf\xe9", "\u2603", " padded\t"]),
)


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_every_header_passed_is_writable_and_every_well_formed_one_is_kept(headers: list[tuple[str, str]]) -> None:
    out, dropped = passed_headers(headers)
    for name, value in out:
        assert writable(name, value), (name, value)
    kept = [
        (n, v.strip(" \t"))
        for n, v in headers
        if n.lower() not in HOP_BY_HOP and not n.lower().startswith("x-keybrake-") and well_formed(n, v)
    ]
    assert out == kept
    assert len(out) + len(dropped) == sum(
        1 for n, _ in headers if n.lower() not in HOP_BY_HOP and not n.lower().startswith("x-keybrake-")
    )


@given(NAMES, VALUES)
def test_passable_agrees_with_the_servers(name: str, value: str) -> None:
    value = value.strip(" \t")
    if passable(name, value):
        assert writable(name, value)
    assert passable(name, value) == well_formed(name, value)


def test_an_unwritable_vendor_header_is_dropped_and_named_in_the_reason_never_its_value() -> None:
    evil = [("X-Evil", "a\x7fsecret"), ("X-Good", "ok"), ("Bad Name", "x"), ("X-Latin", "caf\xe9")]
    got = run(STRIPE_CHARGE, answer(200, CHARGED, evil))
    assert [k for k, _ in got.headers] == ["content-type", "request-id", "X-Good", "X-Latin"]
    reason = got.notes.get("reason") or ""
    assert "x-evil" in reason and "invalid name" in reason and "secret" not in reason
    assert got.settlement.verdict == "allowed"
