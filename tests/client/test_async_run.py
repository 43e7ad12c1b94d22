"""`AsyncKeybrake` and `async with akb.run(...)`: revoked on exit, on an exception and when the
task running the block is cancelled (also while the revoke itself is being sent)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from keybrake_client import AsyncKeybrake, AsyncRun, KeybrakeAPIError
from tests.harness import ADMIN_TOKEN, KeybrakeThread


async def test_async_run_issues_and_revokes(kb: KeybrakeThread) -> None:
    async with AsyncKeybrake(kb.url, ADMIN_TOKEN, timeout=10) as akb:
        async with akb.run(vendor="stripe", run_id="arun-1", daily_usd_cap=Decimal("12.5"), ttl=600) as run:
            assert isinstance(run, AsyncRun)
            assert (await akb.get_key(run.key.id)).status == "active"
            assert run.key.policy["daily_usd_cap"] == Decimal("12.5")
        key = await akb.get_key(run.key.id)
        assert key.status == "revoked" and key.revoke_reason == "run finished (arun-1)"
        assert await run.audit() == []
        assert (await run.spend()).gross_usd == 0


async def test_an_exception_revokes(kb: KeybrakeThread) -> None:
    async with AsyncKeybrake(kb.url, ADMIN_TOKEN) as akb:
        with pytest.raises(ValueError, match="boom"):
            async with akb.run(vendor="stripe", run_id="arun-2") as run:
                raise ValueError("boom")
        assert (await akb.get_key(run.key.id)).revoke_reason == "run failed: ValueError (arun-2)"


async def _start_a_long_run(akb: AsyncKeybrake, run_id: str) -> tuple[asyncio.Task[None], list[AsyncRun]]:
    """A task inside `akb.run(run_id)`, waiting a minute; returned once its key is issued."""
    entered = asyncio.Event()
    runs: list[AsyncRun] = []

    async def agent() -> None:
        async with akb.run(vendor="stripe", run_id=run_id) as run:
            runs.append(run)
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(agent())
    await entered.wait()
    return task, runs


async def test_cancellation_revokes_and_stays_cancelled(kb: KeybrakeThread) -> None:
    async with AsyncKeybrake(kb.url, ADMIN_TOKEN) as akb:
        task, runs = await _start_a_long_run(akb, "arun-3")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        key = await akb.get_key(runs[0].key.id)
        assert key.status == "revoked" and key.revoke_reason == "run cancelled (arun-3)"
        assert runs[0].revoked


async def test_a_second_cancel_during_the_revoke_still_revokes(kb: KeybrakeThread) -> None:
    async with AsyncKeybrake(kb.url, ADMIN_TOKEN) as akb:
        task, runs = await _start_a_long_run(akb, "arun-4")
        task.cancel()
        await asyncio.sleep(0)  # the block is left and the revoke sent ...
        task.cancel()  # ... and the task is cancelled again while it waits for the answer
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await akb.get_key(runs[0].key.id)).status == "revoked"


async def test_async_errors_carry_the_code(kb: KeybrakeThread) -> None:
    async with AsyncKeybrake(kb.url, ADMIN_TOKEN) as akb:
        with pytest.raises(KeybrakeAPIError) as info:
            await akb.get_key("vk_doesnotexist")
        assert (info.value.status, info.value.code) == (404, "not_found")
        keys = [k async for k in akb.iter_keys(page_size=1)]
        assert keys == []
