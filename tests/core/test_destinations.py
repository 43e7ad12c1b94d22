"""Phone numbers and email addresses, read the one strict way (docs/policy.md, one parse)."""

from __future__ import annotations

import pytest

from keybrake.core.destinations import (
    check_phone_prefix,
    country_of,
    domain_allowed,
    email_address,
    mask_phone,
    normalise_phone,
    policy_domain,
)
from keybrake.core.errors import Denial


@pytest.mark.parametrize(
    ("raw", "calling_code", "expected"),
    [
        ("+14155550100", None, "+14155550100"),
        ("+1 (415) 555-0100", None, "+14155550100"),
        ("+1.415.555.0100", None, "+14155550100"),
        ("(415) 555-0100", "+1", "+14155550100"),
        ("1 415 555 0100", "+1", "+14155550100"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("020 7946 0958", "+44", "+442079460958"),
        ("whatsapp:+44 20 7946 0958", None, "+442079460958"),
        ("WhatsApp:+14155550100", None, "+14155550100"),
    ],
)
def test_phone_numbers_are_normalised(raw: str, calling_code: str | None, expected: str) -> None:
    assert normalise_phone(raw, default_calling_code=calling_code) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "(415) 555-0100",  # no country code and no default_calling_code
        "+1 415",  # too short for E.164
        "+0 415 555 0100",
        "+1415555010012345",  # too long
        "+1 415 555 O100",  # a letter O
        "sip:agent@example.com",  # a channel the key does not list
        "client:alice",
        "",
    ],
)
def test_unreadable_destinations_are_refused(raw: str) -> None:
    with pytest.raises(Denial) as exc:
        normalise_phone(raw, default_calling_code=None)
    assert exc.value.code == "scope_violation"


def test_listed_channels_pass_through_as_channels() -> None:
    assert normalise_phone("sip:agent@example.com", default_calling_code=None, channels=["sip:"]) == (
        "sip:agent@example.com"
    )


def test_prefix_check_uses_the_normalised_number() -> None:
    check_phone_prefix("+14155550100", ("+1",))
    check_phone_prefix("+442079460958", None)
    with pytest.raises(Denial) as exc:
        check_phone_prefix(normalise_phone("+44 20 7946 0958", default_calling_code=None), ("+1",))
    assert exc.value.code == "scope_violation"
    assert "+44 207…" in exc.value.message and "7946" not in exc.value.message


def test_country_and_mask() -> None:
    assert country_of("+14155550100") == "US"
    assert country_of("+16135550100") == "CA"
    assert country_of("+18765550100") == "JM"  # +1 is not always the US: priced by country
    assert country_of("+442079460958") == "GB"
    assert country_of("sip:x@y.z") is None
    assert mask_phone("+14155550100") == "+1 415…"
    assert mask_phone("+442079460958") == "+44 207…"


@pytest.mark.parametrize(
    ("value", "address", "domain"),
    [
        ("a@Example.COM", "a@example.com", "example.com"),
        ("Jane Doe <jane@ex.com>", "jane@ex.com", "ex.com"),
        ('"Doe, Jane" <j@x.com>', "j@x.com", "x.com"),
        ('"a@good.com" <b@evil.com>', "b@evil.com", "evil.com"),
        ("<a@münchen.de>", "a@xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("A.B@Sub.Example.com", "A.B@sub.example.com", "sub.example.com"),
    ],
)
def test_email_addresses(value: str, address: str, domain: str) -> None:
    assert email_address(value, field="to") == (address, domain)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("a@x.com, b@y.com", "param_ambiguous"),
        ("a@x.com; b@y.com", "scope_violation"),
        ("garbage", "scope_violation"),
        ("a@b@evil.com", "scope_violation"),
        ("x@[1.2.3.4]", "scope_violation"),
        ("@example.com", "scope_violation"),
        ("", "scope_violation"),
        ("a@example.com.", "scope_violation"),
    ],
)
def test_unreadable_addresses_are_refused(value: str, code: str) -> None:
    with pytest.raises(Denial) as exc:
        email_address(value, field="to")
    assert exc.value.code == code


def test_domain_matching() -> None:
    assert domain_allowed("example.com", ("example.com",))
    assert not domain_allowed("mail.example.com", ("example.com",))
    assert domain_allowed("mail.example.com", ("*.example.com",))
    assert not domain_allowed("example.com", ("*.example.com",))
    assert not domain_allowed("evilexample.com", ("*.example.com",))
    assert not domain_allowed("example.com.evil.io", ("example.com",))


def test_policy_domains_are_normalised_or_refused() -> None:
    assert policy_domain("Example.COM") == "example.com"
    assert policy_domain("*.München.de") == "*.xn--mnchen-3ya.de"
    for bad in ("*", "a@b.com", "localhost", "*.*.com", "exa mple.com"):
        with pytest.raises(ValueError):
            policy_domain(bad)


@pytest.mark.parametrize("raw", ["01168812345", "447700900123", "0044 7700 900123x", "1"])
def test_a_national_number_that_is_not_one_of_the_default_country_is_refused(raw: str) -> None:
    """Found by the red-team run: `01168812345` (US international prefix, then Tuvalu) was read as
    `+101168812345` and passed a `+1` prefix check."""
    with pytest.raises(Denial) as info:
        normalise_phone(raw, default_calling_code="+1")
    assert info.value.code == "scope_violation"


@pytest.mark.parametrize(
    ("raw", "code", "want"),
    [
        ("(415) 555-0100", "+1", "+14155550100"),
        ("07700 900123", "+44", "+447700900123"),
        ("06 1234 5678", "+39", "+390612345678"),
    ],
)
def test_national_numbers_of_the_default_country_are_read(raw: str, code: str, want: str) -> None:
    assert normalise_phone(raw, default_calling_code=code) == want
