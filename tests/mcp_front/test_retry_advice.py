"""Every refusal's tool error says whether calling again can help, and the advice fits the code
(docs/mcp.md, results and errors): a revoked key's error said "change the call", which can never
help (found by a newcomer run)."""

from __future__ import annotations

import pytest

from keybrake.core.errors import ASK_AGAIN, CODES, OUTCOME_UNKNOWN, Denial
from keybrake.mcp.results import KEY_UNUSABLE, retry_advice

NEW_KEY = "ask the operator for a new key"


@pytest.mark.parametrize("code", [code for code, _ in CODES])
def test_each_codes_advice_fits_it(code: str) -> None:
    advice = retry_advice(Denial(code, "refused"))
    assert advice.endswith(".") and "\n" not in advice
    if code in KEY_UNUSABLE:
        assert NEW_KEY in advice and "change the call" not in advice
    else:
        assert NEW_KEY not in advice
    if code in ASK_AGAIN:
        assert "asks a person again" in advice
    elif Denial(code, "refused").retryable:
        assert "can succeed" in advice
    elif code in OUTCOME_UNKNOWN:
        assert "may have acted" in advice


def test_the_key_codes_are_the_401_ones() -> None:
    """Every refusal of the key itself (HTTP 401) is one no change of the call can help."""
    assert {code for code, status in CODES if status == 401} == KEY_UNUSABLE


def test_a_call_refused_before_it_was_built_is_a_tool_error_with_its_code_and_advice() -> None:
    """The MCP front's own refusal (its arguments waited past the deadline behind other large
    bodies: proxy/offload.py) reads as any pipeline refusal does."""
    from keybrake.mcp.results import denial_result
    from keybrake.proxy.offload import QUEUED_TOO_LONG

    out = denial_result(Denial("enforcement_unavailable", QUEUED_TOO_LONG))
    text = out.content[0].text  # type: ignore[union-attr]
    assert out.is_error and out.meta == {"keybrake": {"code": "enforcement_unavailable"}}
    assert text == f"Keybrake refused this call (enforcement_unavailable): {QUEUED_TOO_LONG}\n" + retry_advice(
        Denial("enforcement_unavailable", QUEUED_TOO_LONG)
    )
    assert "can succeed" in text


@pytest.mark.parametrize("stated", [True, False])
def test_a_cap_refusal_says_its_reset_time_once(stated: bool) -> None:
    """The cap's refusal names when it resets (proxy/decisions.py); the advice said it again."""
    from keybrake.core.errors import CapHit
    from keybrake.core.timefmt import rfc3339
    from keybrake.mcp.results import denial_result

    resets = 1_796_256_000_000
    cap = CapHit("key", "key_1", "daily_usd_cap", 5_000_000, 4_900_000, 200_000, resets, True)
    message = "Daily USD cap of 5 reached." + (f" It resets at {rfc3339(resets)}." if stated else "")
    text = denial_result(Denial("spend_cap_exceeded", message, cap=cap)).content[0].text  # type: ignore[union-attr]
    assert text.count(rfc3339(resets)) == 1, text
    assert "Retrying will not help before the cap resets" in text
