"""The admin tokens role (`AdminTokenStore`: the admin gate checks tokens, the CLI and bootstrap
issue and revoke them); on every engine."""

from __future__ import annotations

from keybrake.store.base import AdminTokenRecord, AdminTokenStore
from tests.store.contract import Clock


async def test_issue_find_list_and_revoke(clock: Clock, admin_tokens: AdminTokenStore) -> None:
    """Found by hash only; listed newest first; a revoke is final (a second answers False) and the
    token is still found, with its `revoked_at`, so the gate can refuse it."""
    first = AdminTokenRecord("adm_1", "admin", "ops", clock.ms, None)
    await admin_tokens.insert_admin_token(first, "hash-1")
    clock.ms += 1
    second = AdminTokenRecord("adm_2", "admin", "ci", clock.ms, None)
    await admin_tokens.insert_admin_token(second, "hash-2")
    await admin_tokens.insert_admin_token(AdminTokenRecord("adm_1", "admin", "dup", clock.ms, None), "hash-3")
    assert await admin_tokens.admin_token_by_hash("hash-1") == first
    assert await admin_tokens.admin_token_by_hash("hash-3") is None  # the id was taken: nothing added
    assert await admin_tokens.list_admin_tokens() == [second, first]
    clock.ms += 1
    assert await admin_tokens.revoke_admin_token("adm_1")
    assert not await admin_tokens.revoke_admin_token("adm_1")
    assert not await admin_tokens.revoke_admin_token("adm_missing")
    assert await admin_tokens.admin_token_by_hash("hash-1") == AdminTokenRecord(
        "adm_1", "admin", "ops", first.created_at, clock.ms
    )
