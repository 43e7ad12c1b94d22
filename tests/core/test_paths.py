"""Path normalisation: whatever Keybrake matches is what any upstream reading would see."""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.paths import join, normalise_path
from keybrake.core.patterns import parse_pattern


def upstream_readings(raw: str) -> set[str]:
    """Ways a server might read a path: decoded once, decoded until stable, dot segments removed."""
    once = unquote(raw)
    full = raw
    for _ in range(5):
        full = unquote(full)
    out = set()
    for p in (once, full):
        out.add(p)
        out.add(posixpath.normpath(p.replace("\\", "/")) if p.startswith("/") else p)
    return out


SEGMENT_PARTS = st.sampled_from(
    [
        "v1",
        "customers",
        "charges",
        "cus_1",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "%2f",
        "%2F",
        "%5c",
        "%252e",
        "%252f",
        "%25",
        "a%2fb",
        "\\",
        "%00",
        "%20",
        "x",
        "%63harges",
        ";",
        "%3b",
        "~",
        "@",
        "",
    ]
)


@st.composite
def raw_paths(draw: st.DrawFn) -> str:
    segs = draw(st.lists(st.lists(SEGMENT_PARTS, min_size=1, max_size=3).map("".join), min_size=1, max_size=6))
    prefix = draw(st.sampled_from(["/", "//", "/v1/customers/", "http://evil/", ""]))
    return prefix + "/".join(segs)


@settings(max_examples=3000, deadline=None)
@given(raw_paths())
def test_accepted_paths_mean_the_same_to_every_reader(raw: str) -> None:
    try:
        segments = normalise_path(raw.encode("latin-1"))
    except Denial as d:
        assert d.code == "path_invalid"
        return
    matched = join(segments)
    for reading in upstream_readings(raw):
        assert reading == matched, (raw, reading, matched)


@settings(max_examples=3000, deadline=None)
@given(raw_paths())
def test_no_variant_escapes_an_allowlist(raw: str) -> None:
    pattern = parse_pattern("GET /v1/customers/*")
    try:
        segments = normalise_path(raw.encode("latin-1"))
    except Denial:
        return
    if pattern.matches("GET", segments):
        for reading in upstream_readings(raw):
            parts = reading.split("/")
            assert len(parts) == 4 and parts[1:3] == ["v1", "customers"] and parts[3] not in ("", ".", "..")


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/customers/../charges",
        "/v1/customers/%2e%2e/charges",
        "/v1/customers/%2E%2E/charges",
        "/v1/customers%2fcus_1",
        "/v1/customers%2Fcus_1",
        "/v1/customers/%252e%252e/charges",
        "/v1//charges",
        "//evil.example/v1/charges",
        "http://evil.example/v1/charges",
        "/v1/customers/cus_1/",
        "/v1/customers\\..\\charges",
        "/v1/customers/%5c..%5ccharges",
        "/v1/cus%00tomers",
        "/v1/%ff",
        "/v1/%zz",
        "/v1/./charges",
    ],
)
def test_refused(raw: str) -> None:
    with pytest.raises(Denial) as info:
        normalise_path(raw.encode("latin-1"))
    assert info.value.code == "path_invalid"
    assert "refused" in info.value.message


def test_plain_encoded_characters_decode() -> None:
    assert normalise_path(b"/v1/%63harges") == ("v1", "charges")
    assert normalise_path(b"/v1/customers/cus_1") == ("v1", "customers", "cus_1")
