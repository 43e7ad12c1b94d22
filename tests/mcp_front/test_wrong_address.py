"""An MCP client pointed at the wrong address is told where MCP is (newcomer run, 2026-12-02):
`http://host:8080/mcp` is a call to the key's vendor, refused with the vendor's 415 or
endpoint_not_allowed and no clue; `/_keybrake/mcp/` was a bare 404."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.proxy.decisions import with_mcp_hint
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.mcp_front.test_redteam_mcp import ACCEPT, tool_call

HINT = "Keybrake serves MCP at /_keybrake/mcp"


@pytest.mark.parametrize("path", ["/mcp", "/stripe/mcp", "/mcp/"])
def test_a_json_rpc_post_to_a_vendor_path_ending_in_mcp_names_the_endpoint(
    kb: KeybrakeThread, fake_stripe: FakeStripe, path: str
) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    r = httpx.post(
        kb.url + path,
        json=tool_call("stripe_list_customers", {}),
        headers={**ACCEPT, "authorization": f"Bearer {key['key']}"},
    )
    assert r.status_code in (400, 403, 404, 415), r.text
    assert HINT in r.json()["error"]["message"], r.text
    assert fake_stripe.requests == []
    (row,) = kb.audit(key_id=key["id"])  # refused like any call of the key, and recorded
    assert row["verdict"].startswith("denied") and HINT in row["reason"]


@pytest.mark.parametrize("path", ["/_keybrake/mcp/", "/_keybrake/MCP", "/_keybrake/"])
def test_a_misspelt_keybrake_endpoint_names_the_right_ones(kb: KeybrakeThread, path: str) -> None:
    r = httpx.post(kb.url + path, json={})
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "/_keybrake/mcp (POST, MCP)" in message and "/_keybrake/self (GET)" in message


@given(
    path=st.from_regex(r"/[a-z0-9_/]{0,30}", fullmatch=True).flatmap(
        lambda p: st.sampled_from([p, p.rstrip("/") + "/mcp", p.rstrip("/") + "/mcp/", p + "mcpx"])
    ),
    code=st.sampled_from(["endpoint_not_allowed", "unsupported_media_type", "path_invalid"]),
)
def test_only_a_path_ending_in_mcp_gets_the_hint(path: str, code: str) -> None:
    denial = Denial(code, "Refused.")
    out = with_mcp_hint(denial, path)
    if path.rstrip("/").rsplit("/", 1)[-1] == "mcp":
        assert out.message == f"Refused. {HINT}, not at {path}." and out.code == code
    else:
        assert out is denial
