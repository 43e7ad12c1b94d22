"""The upstream client (net/upstream.py): the vendor's whole answer, however it arrives, and
the size limit."""

from __future__ import annotations

import asyncio

import pytest

from keybrake.core.upstream import UpstreamOutcomeUnknown, UpstreamRequest, UpstreamResponse
from keybrake.net.upstream import AiohttpUpstream

BODY = bytes(range(256)) * 1200  # 307,200 bytes


async def _slow_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An answer whose body arrives in 1,000-byte pieces, a pause between them."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % len(BODY))
    for i in range(0, len(BODY), 1000):
        writer.write(BODY[i : i + 1000])
        await writer.drain()
        if i % 50_000 == 0:
            await asyncio.sleep(0.005)
    await writer.drain()
    writer.close()


async def _fetch(max_response_bytes: int) -> UpstreamResponse:
    server = await asyncio.start_server(_slow_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = AiohttpUpstream(
        timeout_s=10, connect_timeout_s=5, max_response_bytes=max_response_bytes, explicit_hosts=("127.0.0.1",)
    )
    try:
        return await upstream.send(UpstreamRequest("GET", f"http://127.0.0.1:{port}/v1/charges", [], b""))
    finally:
        await upstream.close()
        server.close()


def test_a_body_arriving_in_pieces_is_read_whole() -> None:
    resp = asyncio.run(_fetch(10**6))
    assert resp.status == 200
    assert resp.body == BODY
    assert ("content-length", str(len(BODY))) in resp.headers


def test_a_body_past_the_limit_is_an_unknown_outcome() -> None:
    with pytest.raises(UpstreamOutcomeUnknown, match="larger than KEYBRAKE_MAX_RESPONSE_BYTES"):
        asyncio.run(_fetch(100_000))
