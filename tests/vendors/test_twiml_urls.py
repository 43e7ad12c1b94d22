"""`allowed_twiml_urls` names what a server would fetch: generated URLs against a reference resolver.

A prefix entry (`https://hooks.example.com/twiml/*`) must admit only URLs that a web server
resolves under that prefix. The reference resolves the path as RFC 3986 §5.2.4 does after
decoding percent-escaped dots (what common servers do), and treats an encoded `/` or a
backslash as a separator too. Keybrake may refuse more, never admit a URL that resolves outside.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.vendors.twilio_voice import url_named

PREFIX = "https://hooks.example.com/twiml/"


def resolved_path(url: str) -> str:
    """The path a lenient server serves: dots decoded, `%2f` and `\\` as separators, dot segments removed."""
    path = unquote(urlsplit(url).path).replace("\\", "/")
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return "/".join(out) if path.startswith("/") else "/" + "/".join(out)


segments = st.lists(
    st.sampled_from(
        ["..", ".", "%2e%2e", "%2E.", ".%2e", "%2e", "a", "evil", "twiml", "%2f", "a%2f..", "..\\", "x.xml"]
    ),
    max_size=5,
)


@pytest.mark.store_free
@settings(max_examples=1000, deadline=None)
@given(rest=segments)
def test_a_named_url_resolves_under_its_prefix(rest: list[str]) -> None:
    url = PREFIX + "/".join(rest)
    if url_named(url, (PREFIX + "*",)):
        assert resolved_path(url).startswith("/twiml/") or resolved_path(url) == "/twiml", url
