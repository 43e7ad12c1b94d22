"""SMS segment counting (GSM 03.38 septets vs UCS-2), for Twilio estimates.

A single-part message holds 160 GSM-7 septets or 70 UCS-2 code units; a multi-part one 153 or
67 per part, because each part carries a concatenation header. Parts never split an escape pair
(GSM extension characters take two septets) or a surrogate pair, so counting is greedy per part.
Twilio's optional "smart encoding" can only lower the count: this is an upper bound.
"""

from __future__ import annotations

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


def is_gsm7(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def segments(text: str) -> int:
    """How many SMS parts `text` is sent as (at least 1)."""
    if is_gsm7(text):
        units = [2 if ch in GSM_EXTENSION else 1 for ch in text]
        single, multi = 160, 153
    else:
        units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, multi = 70, 67
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for u in units:
        if used + u > multi:
            parts, used = parts + 1, 0
        used += u
    return parts
