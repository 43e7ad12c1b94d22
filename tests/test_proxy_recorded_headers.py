"""The vault key in a header Keybrake records on the audit row (X-Agent-Run-Id,
X-Triggering-Event-Id, X-Keybrake-*) is refused before it is recorded (400 key_ambiguous, naming
the header), as it is anywhere forwarded (tests/test_proxy_secret_crossing.py): the audit trail and
its exports never hold a live key. Found by the third MCP red team (an agent's run id set to its
own key was kept in clear as the row's agent_run_id).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.proxy.echoes import PIECE_CHARS, check_recorded_headers
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.mcp_front.test_redteam_mcp import ACCEPT, tool_call

TOKEN = "vault_key_" + "b2" * 16
RECORDED = st.one_of(
    st.sampled_from(["x-agent-run-id", "x-triggering-event-id"]),
    st.from_regex(r"x-keybrake-[a-z][a-z0-9-]{0,20}", fullmatch=True).filter(lambda n: n != "x-keybrake-key"),
)
SECRET = TOKEN.removeprefix("vault_key_")
SPELLINGS = st.one_of(
    st.sampled_from([TOKEN, quote(TOKEN, safe="").replace("_", "%5F"), f"run:{TOKEN}:1", f"{TOKEN}-retry"]),
    st.sampled_from([SECRET, quote(quote(TOKEN, safe="").replace("_", "%5F"), safe="")]),  # the fourth red team's
    # Any piece of the key's random part as long as PIECE_CHARS, wherever it sits in the value.
    st.builds(
        lambda start, length, before, after: f"{before}{SECRET[start : start + length]}{after}",
        st.integers(0, len(SECRET) - PIECE_CHARS),
        st.integers(PIECE_CHARS, len(SECRET)),
        st.sampled_from(["", "run-", "a.b:"]),
        st.sampled_from(["", "-1", ":x"]),
    ),
)


def _request(*headers: tuple[str, str]) -> ProxyRequest:
    return ProxyRequest("POST", b"/stripe/v1/customers", b"", (("authorization", f"Bearer {TOKEN}"), *headers), b"", "")


@given(name=RECORDED, value=SPELLINGS)
def test_a_recorded_header_carrying_the_key_is_refused_naming_it(name: str, value: str) -> None:
    with pytest.raises(Denial) as exc:
        check_recorded_headers(TOKEN, _request(("x-agent-run-id", "run-1"), (name, value)))
    assert exc.value.code == "key_ambiguous" and f"request's {name} header:" in exc.value.message
    assert TOKEN not in exc.value.message


@given(name=st.one_of(RECORDED, st.just("x-other")), value=st.from_regex(r"[A-Za-z0-9._:-]{1,60}", fullmatch=True))
def test_recorded_headers_without_the_key_pass(name: str, value: str) -> None:
    if TOKEN in value:
        return
    check_recorded_headers(TOKEN, _request((name, value), ("x-keybrake-key", TOKEN)))  # the key's own header


def _rows_hold(kb: KeybrakeThread, key: dict[str, str]) -> bool:
    return key["key"] in json.dumps(kb.audit(key_id=key["id"]))


def test_a_run_id_that_is_the_key_is_refused_and_never_recorded(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    auth = {"Authorization": f"Bearer {key['key']}"}
    for header in ("X-Agent-Run-Id", "X-Triggering-Event-Id", "X-Keybrake-Ticket"):
        r = httpx.post(
            f"{kb.url}/stripe/v1/customers", data={"email": "a@b.io"}, headers={**auth, header: key["key"]}, timeout=30
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "key_ambiguous", r.text
        assert f"request's {header.lower()} header:" in r.json()["error"]["message"]
    half = len(key["key"]) // 2 + 5  # split across two recorded headers, the fixed prefix left out
    split = {"X-Agent-Run-Id": key["key"][10:half], "X-Triggering-Event-Id": key["key"][half:]}
    r = httpx.post(f"{kb.url}/stripe/v1/customers", data={"email": "a@b.io"}, headers={**auth, **split}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "key_ambiguous", r.text
    assert fake_stripe.requests == []
    rows = kb.audit(key_id=key["id"])
    assert len(rows) == 4 and not _rows_hold(kb, key)
    assert not any(piece in json.dumps(rows) for piece in split.values())


def test_an_mcp_call_whose_run_id_is_the_key_is_a_tool_error(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 5})
    answer = httpx.post(
        f"{kb.url}/_keybrake/mcp",
        json=tool_call("stripe_create_customer", {"email": "a@b.io"}),
        headers={**ACCEPT, "authorization": f"Bearer {key['key']}", "x-agent-run-id": key["key"]},
        timeout=60,
    ).json()["result"]
    assert answer["isError"] and "key_ambiguous" in answer["content"][0]["text"]
    assert fake_stripe.requests == [] and not _rows_hold(kb, key)
