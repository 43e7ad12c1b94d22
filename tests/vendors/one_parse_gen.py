"""Shared generators for the one-parse property tests (tests/vendors/test_one_parse_props_*.py):
request building, lenient spellings of a name, wire encodings of a key, and entry lists.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.vendors.resend import Resend
from keybrake.vendors.stripe import Stripe
from keybrake.vendors.twilio import Twilio

FORM = ("content-type", "application/x-www-form-urlencoded")
JSON = ("content-type", "application/json")
RATES = {"usd": Decimal(1), "eur": Decimal("1.09"), "jpy": Decimal("0.0067")}


def props(examples: int) -> settings:
    """`examples` generated cases, without a per-example deadline (a loaded CI box is slow)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


S, T, R = Stripe(), Twilio(), Resend(Decimal("0.0004"))

BLANKS = " \t\r\n\u00a0\u200b\ufeff"
FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def proxy_request(method: str, path: str, query: str, body: bytes, header: tuple[str, str]) -> ProxyRequest:
    return ProxyRequest(method, path.encode(), query.encode(), (header,), body, "127.0.0.1")


def segments(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/"))


def outcome(fn: Any, *args: Any) -> Any:
    """A decision's result, or the code of the Denial it raised (4xx only)."""
    try:
        return fn(*args)
    except Denial as d:
        assert 400 <= d.status < 500, d
        return ("denied", d.code)


def spellings(name: str) -> list[str]:
    """Spellings a lenient reader might take for `name`: case, width, look-alike blanks."""
    return [
        name.upper(),
        name.lower(),
        name[:1].swapcase() + name[1:],
        "".join(FULLWIDTH.get(c, c) for c in name),
        name + "\u200b",
        "\ufeff" + name,
        name + " ",
        " " + name,
    ]


def name_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, *spellings(name)])


# How a decoded key goes on the wire: brackets literal or escaped, with or without blanks around.
ENCODINGS = [
    *[lambda k: quote(k, safe="[]")] * 9,
    lambda k: quote(k, safe=""),
    lambda k: quote(k, safe=""),
    lambda k: "+" + quote(k, safe="[]"),
    lambda k: "%20" + quote(k, safe="[]"),
    lambda k: quote(k, safe="[]") + "+",
]
ENCODING = st.sampled_from(ENCODINGS)
PLACE = st.sampled_from(["body", "body", "body", "query"])
REPEAT = st.integers(0, 3)  # 0: a name drawn again is sent twice; otherwise its value is replaced


def add_entry(draw: st.DrawFn, entries: list[tuple[str, str, str]], key: str, where: str, text: str) -> None:
    """Add `text` (a `name=value` pair or JSON member) for `key`; most often a key drawn twice is
    kept once, so that repeats are one variant among the others rather than most examples."""
    for i, (k, _, _) in enumerate(entries):
        if k == key and draw(REPEAT):
            entries[i] = (key, where, text)
            return
    entries.append((key, where, text))


def join_entries(entries: list[tuple[str, str, str]], where: str, sep: str = "&") -> str:
    return sep.join(text for _, w, text in entries if w == where)
