"""MCP tests: the `mcp` SDK's own client against Keybrake's MCP front (docs/mcp.md), over
streamable HTTP (`/_keybrake/mcp`) and over stdio (`keybrake mcp`, spawned as a process)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResend
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioThread
from tests.harness import LOADED_BOUNDS, KeybrakeThread

Connect = Callable[..., contextlib.AbstractAsyncContextManager[Client]]


@contextlib.asynccontextmanager
async def mcp_http(base_url: str, vault_key: str, *, mode: str = "auto", **headers: str) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP at `base_url`/_keybrake/mcp, with the vault key as Bearer.
    `mode`: "auto" (the SDK's default: the stateless 2026-07-28 protocol) or "legacy" (the
    initialize handshake of earlier protocol versions, as older clients speak it)."""
    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {vault_key}", **headers}, timeout=httpx2.Timeout(60.0)
        ) as http,
        Client(streamable_http_client(f"{base_url}/_keybrake/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def mcp_http_legacy(base_url: str, vault_key: str, **headers: str) -> contextlib.AbstractAsyncContextManager[Client]:
    """`mcp_http` speaking the handshake-era protocol (initialize, then calls)."""
    return mcp_http(base_url, vault_key, mode="legacy", **headers)


@contextlib.asynccontextmanager
async def mcp_stdio(base_url: str, vault_key: str, **env: str) -> AsyncIterator[Client]:
    """The SDK's client over stdio, spawning `keybrake mcp` with the vault key in its environment."""
    params = StdioServerParameters(
        command=str(Path(sys.executable).parent / "keybrake"),
        args=["mcp", "--url", base_url],
        env={"PATH": os.environ.get("PATH", ""), "KEYBRAKE_VAULT_KEY": vault_key, **env},
    )
    async with Client(params) as client:
        yield client


@pytest.fixture(
    params=[
        "http",
        # The other transports are the client side's concern (the server sees the same requests):
        # once, in the first pass, not again on PostgreSQL.
        pytest.param("http-legacy", marks=pytest.mark.client_side),
        pytest.param("stdio", marks=pytest.mark.client_side),
    ]
)
def connect(request: pytest.FixtureRequest) -> Connect:
    """Connect the SDK's client to a Keybrake server's MCP front, over each transport in turn (and
    over HTTP in both protocol eras)."""
    return {"http": mcp_http, "http-legacy": mcp_http_legacy, "stdio": mcp_stdio}[request.param]


def text_of(result: Any) -> str:
    """The text of a tool result's content."""
    return "\n".join(getattr(c, "text", "") for c in getattr(result, "content", []))


# Servers with the harness's generous store bounds, explicitly, so that the MCP tests marked
# `timing` (which otherwise keep the defaults) check what MCP does, not the fail-closed deadlines.
GENEROUS: dict[str, Any] = LOADED_BOUNDS


@pytest.fixture
def kb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", **GENEROUS) as server:
        server.add_credential(fake_stripe.base_url)
        yield server


@pytest.fixture
def kbt(tmp_path: Path, fake_twilio: FakeTwilioThread) -> Iterator[KeybrakeThread]:
    secret = {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}
    with KeybrakeThread(tmp_path / "data", **GENEROUS) as server:
        server.add_credential(fake_twilio.base_url, name="twilio", secret=secret, vendor="twilio")
        yield server


@pytest.fixture
def kbr(tmp_path: Path, fake_resend: FakeResend) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data", **GENEROUS) as server:
        server.add_credential(fake_resend.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        yield server
