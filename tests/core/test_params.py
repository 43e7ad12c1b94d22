from __future__ import annotations

import pytest

from keybrake.core.params import parse_form, parse_json_body
from keybrake.errors import Denial


def test_nested_keys_become_dotted_paths() -> None:
    p = parse_form(b"", b"metadata%5Border_id%5D=42&items[0][price]=p1&items[1][price]=p2&expand[]=a&expand[]=b")
    assert p.values["metadata.order_id"] == ("42",)
    assert p.values["items.price"] == ("p1", "p2")
    assert p.values["expand"] == ("a", "b")


@pytest.mark.parametrize(
    ("query", "body"),
    [(b"", b"amount=100&amount=999999"), (b"amount=1", b"amount=2"), (b"a[0]=1&a[0]=2", b"")],
)
def test_ambiguous_parameters_are_refused(query: bytes, body: bytes) -> None:
    with pytest.raises(Denial) as info:
        parse_form(query, body)
    assert info.value.code == "param_ambiguous"


@pytest.mark.parametrize("body", [b"a[b=1", b"\xff\xfe=1", b"amount=%ff"])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(Denial) as info:
        parse_form(b"", body)
    assert info.value.code == "body_invalid"


def test_json_duplicate_keys_refused_and_nested_flattened() -> None:
    with pytest.raises(Denial) as info:
        parse_json_body(b'{"to": "a@b.c", "to": "x@y.z"}')
    assert info.value.code == "body_invalid"
    _, p = parse_json_body(b'{"to": ["a@b.c", "d@e.f"], "headers": {"X": 1}}')
    assert p.values["to"] == ("a@b.c", "d@e.f")
    assert p.values["headers.X"] == ("1",)
    with pytest.raises(Denial):
        parse_json_body(b"{not json")
