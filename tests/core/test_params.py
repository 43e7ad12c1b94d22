from __future__ import annotations

import pytest

from keybrake.core.errors import Denial
from keybrake.core.names import check_spelling
from keybrake.core.params import check_charset, check_no_body, parse_form, parse_json_body


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


@pytest.mark.parametrize(
    ("query", "body", "why"),
    [
        (b"", b"amount[]=100&amount=99999", "two shapes"),
        (b"", b"amount=99999&amount[]=100", "two shapes"),
        (b"", b"x[0]=1&x[]=2", "two shapes"),
        (b"", b"x[]=1&x[][]=2", "two shapes"),
        (b"", b"metadata=&metadata[a]=1", "value and parent"),
        (b"", b"amount=1&amount[x]=2", "value and parent"),
        (b"", b"x[0][a]=1&x[1]=2", "value and parent"),
        (b"amount=99999", b"amount[]=100", "query and body"),
        (b"metadata[a]=1", b"metadata[b]=2", "query and body"),  # Rack merges shallowly: b replaces a
        (b"", b"amount=1& amount=2", "whitespace"),
        (b"", b"amount=1&+amount=2", "whitespace"),
        (b"", b"metadata.order_id=1", "dotted name"),
        (b"", b"a[0]=1&a[0]=2", "repeat"),
        (b"", b"x[][a]=1&x[][a]=2", "repeat"),
    ],
)
def test_one_name_one_shape_one_place(query: bytes, body: bytes, why: str) -> None:
    with pytest.raises(Denial) as info:
        parse_form(query, body)
    assert info.value.code == "param_ambiguous", why


@pytest.mark.parametrize("body", [b"amount", b"a=%zz", b"a=%", b"=1", b"[a]=1", b"a[b]c=1", b"a]=1"])
def test_forms_vendors_read_differently_are_malformed(body: bytes) -> None:
    with pytest.raises(Denial) as info:
        parse_form(b"", body)
    assert info.value.code == "body_invalid"


def test_lists_only_in_list_shapes_and_scalars_read_once() -> None:
    p = parse_form(b"", b"expand[]=a&expand[]=b&items[0][price]=p&items[1][price]=q&metadata[a.b]=1&amount=5")
    assert p.values["expand"] == ("a", "b") and p.lists >= {"expand", "items.price"}
    assert p.scalar("amount") == "5" and p.tops == {"expand", "items", "metadata", "amount"}
    with pytest.raises(Denial) as info:
        parse_form(b"", b"amount[]=100").scalar("amount")
    assert info.value.code == "param_ambiguous"


def test_literal_names_for_vendors_without_brackets() -> None:
    p = parse_form(b"", b"To[]=a&To=b&MediaUrl=x&MediaUrl=y", repeatable=frozenset({"MediaUrl"}), brackets=False)
    assert p.values == {"To[]": ("a",), "To": ("b",), "MediaUrl": ("x", "y")} and p.lists == {"MediaUrl"}
    with pytest.raises(Denial):
        parse_form(b"", b"To=a&To=b", brackets=False)


@pytest.mark.parametrize(
    "body",
    [
        b'{"to": "a@b.c", "bcc ": "x@y.z"}',
        b'{"to": "a@b.c", "\\u200bbcc": "x@y.z"}',
        b'{"to": "a@b.c", "To": "x@y.z"}',
        b'{"template": {"variables": {"Name": 1, "name": 2}}}',
        b'[{"to": "a@b.c"}, {"to": "a@b.c", "TO": "x@y.z"}]',
        b'{"": 1}',
    ],
)
def test_json_keys_that_read_alike_are_refused_at_every_depth(body: bytes) -> None:
    with pytest.raises(Denial) as info:
        parse_json_body(body)
    assert info.value.code == "body_invalid"


def test_json_names_reached_two_ways_are_refused() -> None:
    for body in (b'{"a.b": 1, "a": {"b": 2}}', b'{"a": 1, "a.b": 2}', b'{"a": [1, {"b": 2}]}'):
        with pytest.raises(Denial) as info:
            parse_json_body(body)
        assert info.value.code == "param_ambiguous"


def test_spelling_and_bodiless_methods() -> None:
    check_spelling(["To", "StatusCallback"], {"To"}, vendor="Twilio", literal=True)
    for name in ("to", "To[]", " To", "Ｔｏ", "To]"):
        with pytest.raises(Denial):
            check_spelling([name], {"To"}, vendor="Twilio", literal=True)
    check_spelling(["amount"], {"amount"}, vendor="Stripe", literal=False)
    check_no_body("GET", "application/json", b" { } ")  # resend-python sends {} on every GET
    check_no_body("POST", "application/x-www-form-urlencoded", b"a=1")
    for method, ctype, body in (("GET", FORM, b"customer=cus_A"), ("DELETE", "application/json", b'{"a": 1}')):
        with pytest.raises(Denial) as info:
            check_no_body(method, ctype, body)
        assert info.value.code == "body_invalid"


FORM = "application/x-www-form-urlencoded"


def test_prototype_keys_and_foreign_charsets_are_refused() -> None:
    for body in (b'{"__proto__": {"bcc": "x@y.z"}}', b'[{"constructor": {"prototype": {"bcc": "x@y.z"}}}]'):
        with pytest.raises(Denial) as info:
            parse_json_body(body)
        assert info.value.code == "body_invalid"
    check_charset("application/json; charset=UTF-8", b"{}")
    check_charset("application/x-www-form-urlencoded", b"a=1")
    with pytest.raises(Denial) as info:
        check_charset("application/x-www-form-urlencoded; charset=utf-16le", b"a\x00=\x001\x00")
    assert info.value.code == "unsupported_media_type"


def test_a_json_body_name_with_no_values_still_collides_with_the_query() -> None:
    from keybrake.core.params import merge, query_params

    _, body = parse_json_body(b'{"customer": {}}')
    with pytest.raises(Denial) as info:
        merge(query_params(b"customer=cus_A"), body)
    assert info.value.code == "param_ambiguous"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("shape", ['{"amount": %s}', '[{"a": [1, %s]}]', "%s"])
def test_json_constants_that_are_not_json_numbers_are_refused(constant: str, shape: str) -> None:
    # Python's JSON reader takes them; a vendor's does not, and Keybrake must not price or scope one.
    with pytest.raises(Denial) as exc:
        parse_json_body((shape % constant).encode())
    assert exc.value.code == "body_invalid" and constant.lstrip("-") in exc.value.message
