"""Where a message goes: phone numbers and email addresses, read the one strict way (docs/policy.md, one parse).

The normalised form is what policy checks compare; the request is forwarded unchanged. Anything
that cannot be read with certainty is refused rather than guessed at.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from email.errors import HeaderParseError
from email.headerregistry import HeaderRegistry

import idna
import phonenumbers

from keybrake.core.errors import Denial

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
PHONE_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")
CHANNEL = re.compile(r"^[a-z][a-z0-9-]{0,30}:$")
CALLING_CODE = re.compile(r"^\+[1-9][0-9]{0,3}$")
_CHANNEL_OF = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,30}):")
_PUNCTUATION = str.maketrans("", "", " -.()\t")


def normalise_phone(raw: str, *, default_calling_code: str | None, channels: Iterable[str] = ()) -> str:
    """The E.164 number (or `channel:` address) a destination parameter names (e.g. Twilio's `To`);
    raises scope_violation.

    `whatsapp:` is removed; any other channel prefix (`sip:`, `client:` …) is kept as-is and
    accepted only when `channels` lists it exactly.
    """
    value = raw.strip()
    m = _CHANNEL_OF.match(value)
    if m:
        channel = m.group(1).lower() + ":"
        if channel == "whatsapp:":
            value = value[len(channel) :]
        elif channel in set(channels):
            return channel + value[len(channel) :]
        else:
            raise Denial(
                "scope_violation",
                f"Destination channel {channel!r} is not allowed for this key (allowed_to_prefixes would have to "
                "list it exactly). Do not retry.",
            )
    number = value.translate(_PUNCTUATION)
    if number.startswith("00"):
        number = "+" + number[2:]
    if not number.startswith("+"):
        if default_calling_code is None or not (number.isascii() and number.isdigit()):
            raise Denial(
                "scope_violation",
                f"The destination number {_masked(raw)!r} has no country code: use E.164 (+<country><number>), "
                "or ask the operator to set default_calling_code on the key. Do not retry unchanged.",
            )
        number = _with_calling_code(number, default_calling_code)
    if not E164.match(number):
        raise Denial(
            "scope_violation", f"The destination {_masked(raw)!r} is not a phone number in E.164 form: use E.164."
        )
    return number


def _with_calling_code(national: str, calling_code: str) -> str:
    """Read a national number in the country of `calling_code` (trunk prefixes such as 0 removed).

    A number that does not read as one of that country — `01168812345` is the US international
    prefix followed by Tuvalu, `447700900123` a UK number without its `+` — is refused, never
    prefixed blindly (the vendor may read it as the other country). Raises scope_violation.
    """
    region = phonenumbers.region_code_for_country_code(int(calling_code[1:]))
    try:
        parsed = phonenumbers.parse(national, region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or f"+{parsed.country_code}" != calling_code or not phonenumbers.is_possible_number(parsed):
        raise Denial(
            "scope_violation",
            f"The destination {_masked(national)!r} has no country code and does not read as a number of "
            f"{calling_code}: use E.164 (+<country><number>). Do not retry unchanged.",
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_phone_prefix(number: str, allowed: tuple[str, ...] | None) -> None:
    if allowed is None:
        return
    if not any(number.startswith(p) for p in allowed):
        raise Denial(
            "scope_violation",
            f"Destination {mask_phone(number)} is outside this key's allowed_to_prefixes "
            f"({', '.join(allowed)}). Do not retry.",
        )


@functools.lru_cache(maxsize=4096)
def describe(number: str) -> tuple[str | None, str]:
    """(ISO 3166 region or None, masked form) of a normalised destination, from one parse.

    The mask is the country code and the first three national digits (docs/operations.md, logs), e.g.
    `+1 415…`; channels (`sip:…`) have no region and mask to their channel.
    """
    if not number.startswith("+"):
        return None, number.split(":", 1)[0] + ":…"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None, f"{number[:2]} {number[2:5]}…"
    cc = f"+{parsed.country_code}"
    region = phonenumbers.region_code_for_number(parsed)
    return (region if region and region != "ZZ" else None), f"{cc} {number[len(cc) : len(cc) + 3]}…"


def country_of(number: str) -> str | None:
    """ISO 3166 region of an E.164 number (None for channels or unknown numbering plans)."""
    return describe(number)[0]


def mask_phone(number: str) -> str:
    return describe(number)[1]


def _masked(raw: str) -> str:
    digits = "".join(ch for ch in raw if ch.isdigit())
    return raw[:4] + "…" if len(digits) > 4 else raw[:20]


# -- email ------------------------------------------------------------------------------

_REGISTRY = HeaderRegistry()
MAX_ADDRESS_CHARS = 998


def email_address(value: str, *, field: str) -> tuple[str, str]:
    """(address, domain) of one RFC 5322 address (name-addr or addr-spec): the address as
    `local@domain`, with the domain IDNA-encoded and lower-cased.

    A string holding several addresses is ambiguous (400); an address that does not parse is
    refused (403 scope_violation).
    """
    if not isinstance(value, str):
        raise Denial("body_invalid", f"Each address in {field!r} must be a string.")
    if len(value) > MAX_ADDRESS_CHARS:
        # RFC 5322's line limit; it also bounds the stdlib parser, whose time grows with the square
        # of some inputs (encoded words: 34 s for 450 KB — found by the red-team run).
        raise Denial("body_invalid", f"An address in {field!r} is longer than {MAX_ADDRESS_CHARS} characters.")
    try:
        header = _REGISTRY("to", value)  # an address-list header, whatever the field is called
        addresses = header.addresses  # type: ignore[attr-defined]
        broken = bool(header.defects)
    except (HeaderParseError, IndexError, ValueError, TypeError, AttributeError, RecursionError):
        # Inputs the stdlib parser trips on (`.<a@example.com>>`, deep comments) cannot be read.
        addresses, broken = (), True
    if len(addresses) > 1 or (len(addresses) == 1 and "," in value and not _quoted_comma(value)):
        raise Denial(
            "param_ambiguous",
            f"{field!r} holds more than one address in one string; send a list with one address per entry.",
        )
    if len(addresses) != 1 or broken or not addresses[0].domain or not addresses[0].username:
        raise Denial("scope_violation", f"An address in {field!r} could not be read as an email address.")
    addr_spec = addresses[0].addr_spec
    local, domain = addr_spec.rsplit("@", 1)
    domain = normalise_domain(domain, field=field)
    return f"{local}@{domain}", domain


def _quoted_comma(value: str) -> bool:
    """Whether every comma sits inside the quoted display name (`"Doe, Jane" <j@x.com>`)."""
    inside = False
    for ch in value:
        if ch == '"':
            inside = not inside
        elif ch == "," and not inside:
            return False
    return True


def normalise_domain(domain: str, *, field: str) -> str:
    text = domain.strip().rstrip(".").lower()
    if text.startswith("[") or not text:
        raise Denial("scope_violation", f"An address in {field!r} has no domain name (IP literals are refused).")
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise Denial("scope_violation", f"An address in {field!r} has an invalid domain name.") from None


def domain_allowed(domain: str, allowed: tuple[str, ...]) -> bool:
    """`example.com` matches that domain only; `*.example.com` matches its subdomains."""
    for entry in allowed:
        if entry.startswith("*."):
            if domain.endswith(entry[1:]) and len(domain) > len(entry) - 1:
                return True
        elif domain == entry:
            return True
    return False


def policy_domain(entry: str) -> str:
    """Validate and normalise an allowed_*_domains entry (raises ValueError)."""
    wildcard = entry.startswith("*.")
    name = entry[2:] if wildcard else entry
    if not name or "*" in name or "@" in name or "/" in name or " " in name:
        raise ValueError(f"{entry!r} is not a domain name or '*.domain'")
    try:
        encoded = idna.encode(name.strip().rstrip(".").lower(), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"{entry!r} is not a valid domain name: {exc}") from None
    if "." not in encoded:
        raise ValueError(f"{entry!r} is not a fully qualified domain name")
    return ("*." if wildcard else "") + encoded
