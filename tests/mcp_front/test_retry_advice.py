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
