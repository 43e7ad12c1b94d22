"""`keybrake mcp`'s URL and environment rules: what it relays to, what it prints, what it refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.mcp.bridge import endpoint_url, in_clear, shown
from keybrake.tokens import VAULT_PREFIX, new_token
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.mcp_front.conftest import GENEROUS, mcp_stdio, text_of


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/_keybrake/mcp"),
        ("https://kb.example.com/", "https://kb.example.com/_keybrake/mcp"),
        ("http://[::1]:8080/_keybrake/mcp", "http://[::1]:8080/_keybrake/mcp"),
    ],
)
def test_the_endpoint_of_a_server_url(url: str, endpoint: str) -> None:
    assert endpoint_url(url) == endpoint


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://x", "not an http:// or https:// URL"),
        ("http://kb:8080/v1", "names a path"),
        ("http://me:s3cret@kb:8080", "user name or password"),
    ],
)
def test_urls_refused_say_why_and_never_echo_a_password(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as exc:
        endpoint_url(url)
    assert "s3cret" not in str(exc.value)


def test_in_clear_only_off_loopback() -> None:
    assert not in_clear("http://127.0.0.1:8080") and not in_clear("http://localhost:8080")
    assert not in_clear("http://[::1]:8080") and not in_clear("https://kb.example.com")
    assert in_clear("http://kb.example.com:8080") and in_clear("http://10.0.0.5:8080")
    assert shown("http://me:s3cret@kb:8080/x") == "http://kb:8080/x"


def test_the_cli_refuses_a_bad_run_id_and_a_password_in_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYBRAKE_VAULT_KEY", new_token(VAULT_PREFIX))
    monkeypatch.setenv("KEYBRAKE_AGENT_RUN_ID", "run-1\nX-Injected: yes")
    bad_run = CliRunner().invoke(main, ["mcp", "--url", "http://127.0.0.1:9"])
    assert bad_run.exit_code == 2 and "KEYBRAKE_AGENT_RUN_ID must be" in bad_run.stderr
    monkeypatch.delenv("KEYBRAKE_AGENT_RUN_ID")
    password = CliRunner().invoke(main, ["mcp", "--url", "http://me:s3cret@127.0.0.1:9"])
    assert password.exit_code == 2 and "s3cret" not in password.stderr + password.stdout


@pytest.mark.client_side
async def test_a_call_relayed_to_a_stopped_server_is_a_tool_error_with_its_code(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """The relay's own errors carry a code too (newcomer: tool errors without one): the server
    gone between two calls → `keybrake_unreachable`, nothing sent."""
    with KeybrakeThread(tmp_path / "data", **GENEROUS) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 5})
        async with mcp_stdio(kb.url, key["key"]) as c:
            assert len((await c.list_tools()).tools) == 17
            await asyncio.to_thread(kb.__exit__, None, None, None)  # the server stops under the relay
            gone = await c.call_tool("stripe_create_customer", {"email": "a@b.io"})
    assert gone.is_error and "is unreachable" in text_of(gone) and "nothing was sent" in text_of(gone)
    assert (gone.meta or {})["keybrake"] == {"code": "keybrake_unreachable"}
    assert [r for r in fake_stripe.requests if r.method == "POST"] == []
