"""A refused admin `Authorization` header never has any of its text echoed back: a token sent
without 'Bearer ', with a typo in the scheme or with something after it is a secret, and the
401 message goes to logs, exception strings and whoever relays the answer."""

from __future__ import annotations

import secrets
import string

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.admin.gate import header_problem
from tests.harness import KeybrakeThread

TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"


def _runs(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def test_a_token_sent_before_a_space_is_not_echoed_in_the_401(kb: KeybrakeThread) -> None:
    token = "kb_admin_" + secrets.token_urlsafe(24).replace("-", "x")
    for value in (f"{token} extra", f"Bearer:{token} x", f"vault_key_{token[9:]} x"):
        r = httpx.get(f"{kb.url}/v1/keys", headers={"Authorization": value})
        assert r.status_code == 401
        message = r.json()["error"]["message"]
        leaked = [run for run in _runs(value.split(" ")[0]) if run in message and run != "kb_admin"]
        assert not leaked, (value, message)


# A secret (token characters, long enough to be one), with what a misconfigured client puts
# around it: a wrong or missing scheme, a separator typo, something after it.
SECRETS = st.text(TOKEN_ALPHABET, min_size=16, max_size=60)
BEFORE = st.sampled_from(["", "Bearer:", "Bearer=", "Token ", "Basic ", "bearer_", "X"])
AFTER = st.sampled_from(["", " ", " x", " Bearer", "\tx", ", Bearer y"])


@settings(max_examples=300, deadline=None)
@given(secret=SECRETS, before=BEFORE, after=AFTER)
def test_no_refusal_message_holds_any_eight_characters_of_the_secret(secret: str, before: str, after: str) -> None:
    problem = header_problem([before + secret + after]) or ""
    leaked = [run for run in _runs(secret) if run in problem]
    assert not leaked, (before + secret + after, problem)
