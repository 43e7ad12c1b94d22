"""The MCP SDK is loaded by the endpoint's first request, not when a server or a CLI command starts
(docs/mcp.md): importing it cost every `keybrake serve` and every CLI command ≈ 1.5 s of CPU."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx

from tests.harness import KeybrakeThread
from tests.mcp_front.conftest import mcp_http

SDK_LOADED = "any(m in ('mcp', 'mcp_types') or m.startswith(('mcp.', 'mcp_types.')) for m in sys.modules)"


def test_neither_the_server_nor_the_cli_imports_the_sdk() -> None:
    code = (
        "import sys, keybrake.app.asgi, keybrake.runtime; from keybrake.cli import main; main.load_all(); "
        f"print({SDK_LOADED})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


async def test_the_first_requests_load_one_front_and_serve(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    assert kb.app is not None
    lazy = kb.app.mcp
    r = await asyncio.to_thread(
        httpx.get, f"{kb.url}/_keybrake/self", headers={"Authorization": f"Bearer {key['key']}"}
    )
    assert r.status_code == 200 and not lazy.loaded  # other traffic does not load it

    async def listing() -> list[str]:
        async with mcp_http(kb.url, key["key"]) as c:
            return [t.name for t in (await c.list_tools()).tools]

    first = await asyncio.gather(*(listing() for _ in range(4)))  # arriving together, before it is loaded
    assert lazy.loaded and all(names == first[0] for names in first) and "stripe_create_customer" in first[0]
    front = await lazy.front()
    assert await lazy.front() is front  # one front, built once
