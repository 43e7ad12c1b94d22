"""The fake Twilio's vocabulary: credentials, SIDs, errors, GSM-7/UCS-2 segments, form
parameters and the XML it answers with."""

from __future__ import annotations

import json
import re
import secrets
import string
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any
from xml.etree.ElementTree import Element, SubElement

DEFAULT_ACCOUNT_SID = "AC" + "5ca1ab1e" * 4
DEFAULT_AUTH_TOKEN = "a11ce" + "0" * 22 + "b0b00"
DEFAULT_API_KEY_SID = "SK" + "be11" * 8
DEFAULT_API_KEY_SECRET = "Sk3yS3cretSk3yS3cretSk3yS3cret12"

API_VERSION = "2010-04-01"
API = f"/{API_VERSION}"
DOCS = "https://www.twilio.com/docs/errors/"

Params = dict[str, list[str]]
Answer = tuple[int, Any]

_ALNUM = string.ascii_letters + string.digits
# GSM 03.38: the basic character set, and the extension table (escape + character: two septets)
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
# default error for a forced answer with only a status (``fail_next(429)``)
_DEFAULT_CODES = {
    400: 20001,
    401: 20003,
    403: 20403,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    503: 20503,
}
_MESSAGE_BODY_LIMIT = 1600


def _hex(n: int = 32) -> str:
    return secrets.token_hex(n // 2)


def new_sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 lowercase hex digits (``SM``, ``MM``, ``CA``, ``SK``...)."""
    return prefix + _hex()


def _now() -> str:
    """RFC 2822, UTC, as Twilio writes it: ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    return format_datetime(datetime.now(UTC).replace(microsecond=0))


def error_body(status: int, code: int | None = None, message: str | None = None) -> dict[str, Any]:
    """Twilio's error document; ``code`` and ``message`` default from ``status``."""
    code = code if code is not None else _DEFAULT_CODES.get(status, 20500)
    if message is None:
        message = "Authenticate" if code == 20003 else HTTPStatus(status).phrase
    return {"code": code, "message": message, "more_info": f"{DOCS}{code}", "status": status}


class TwilioError(Exception):
    """Raised by handlers; becomes :func:`error_body` with ``status``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(status, code, message)


def _not_found(path: str) -> TwilioError:
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


# --- GSM-7 / UCS-2 segments ------------------------------------------------------------------


def encoding(body: str) -> str:
    """``"GSM"`` when every character is in the GSM 03.38 alphabet (with extension), else ``"UCS-2"``."""
    return "GSM" if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in body) else "UCS-2"


def num_segments(body: str) -> int:
    """How many SMS segments Twilio bills for ``body``.

    GSM-7: 160 septets in one segment, else 153 per segment; extension characters take two.
    UCS-2: 70 UTF-16 units in one segment, else 67; characters outside the BMP take two. A
    character (escape pair or surrogate pair) is never split across segments. Empty is one.
    """
    if encoding(body) == "GSM":
        costs, single, multi = [2 if ch in _GSM_EXTENSION else 1 for ch in body], 160, 153
    else:
        costs, single, multi = [2 if ord(ch) > 0xFFFF else 1 for ch in body], 70, 67
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments


def _us_format(number: str) -> str:
    """``+14155550100`` -> ``(415) 555-0100`` as in ``to_formatted``; other numbers unchanged."""
    m = re.fullmatch(r"\+1(\d{3})(\d{3})(\d{4})", number)
    return f"({m[1]}) {m[2]}-{m[3]}" if m else number


# --- form parameters -------------------------------------------------------------------------


def _one(p: Params, name: str) -> str | None:
    """The first value of ``name`` (Twilio takes the first of a repeated scalar), or None."""
    values = p.get(name)
    return values[0] if values else None


def _int(p: Params, name: str) -> int | None:
    value = _one(p, name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise TwilioError(400, 20001, f"{name} must be an integer")
    return int(value)


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy without the fake's bookkeeping keys (those starting with ``_``)."""
    out: dict[str, Any] = json.loads(json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}))
    return out


def _camel(name: str) -> str:
    """``date_created`` -> ``DateCreated``, as in Twilio's XML representation."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _xml_fields(parent: Element, doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        child = SubElement(parent, _camel(key))
        if isinstance(value, dict):
            _xml_fields(child, value)
        elif value is not None:
            child.text = str(value)
