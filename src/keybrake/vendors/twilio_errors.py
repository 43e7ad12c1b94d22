"""Twilio's error shape for Keybrake's denials (docs/errors.md, error shapes).

Twilio answers errors as `{"code": int, "message", "more_info", "status"}` (twilio.com/docs/
usage/twilios-response, error responses); twilio-python raises `TwilioRestException` with that
`code`. Keybrake's integer code is HTTP status × 1000 + the code's 1-based position among the
codes sharing that status, in `core.errors.CODES` order (so `key_missing` is 401001).
"""

from __future__ import annotations

from typing import Any

from keybrake.core.errors import CODES, STATUS, Denial
from keybrake.vendors.base import Rendered, keybrake_code_doc, retry_after


def twilio_code(code: str) -> int:
    """Twilio-shaped integer code: status × 1000 + position among codes with that status."""
    status = STATUS[code]
    same = [c for c, s in CODES if s == status]
    return status * 1000 + same.index(code) + 1


def twilio_denial(denial: Denial, keybrake: dict[str, Any]) -> Rendered:
    """The denial in Twilio's error shape, with `Retry-After: 1` when a retry can get past it."""
    return Rendered(
        {
            "code": twilio_code(denial.code),
            "message": denial.message,
            "more_info": keybrake_code_doc(denial.code),
            "status": denial.status,
            "details": {"keybrake_code": denial.code, **keybrake},
        },
        retry_after(denial),
    )
