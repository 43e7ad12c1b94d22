"""Opening a Keybrake installation: store, master key, pepper, bootstrap admin token.

Used by `keybrake serve` and by CLI commands that talk to the store directly.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from keybrake.config import Settings
from keybrake.crypto import MasterKeyError, Sealer, load_or_create_master_key, write_secret_file
from keybrake.store import Store, open_store
from keybrake.store.base import (
    AdminTokenRecord,
    AdminTokenStore,
    AlertStore,
    ApprovalStore,
    AuditStore,
    BudgetStore,
    CredentialStore,
    KeyStore,
)
from keybrake.store.pg import PGOptions
from keybrake.tokens import ADMIN_PREFIX, new_id, new_token, token_hash
from keybrake.vendors import build_vendors, registry
from keybrake.vendors.base import Vendor
from keybrake.vendors.registry import VendorSpec

_CANARY = b"keybrake-master-key-check"
BOOTSTRAP_FILE = "bootstrap-admin-token"
BOOTSTRAP_LABEL = "bootstrap"  # the label of the token `ensure_admin_token` generates; reserved


@dataclass
class Runtime:
    settings: Settings
    store: Store
    sealer: Sealer
    pepper: bytes
    vendors: dict[str, Vendor]
    # The specs `vendors` were built from: their policy fields compose the admin API's key models.
    vendor_specs: tuple[VendorSpec, ...] = field(default_factory=registry.specs)

    def hash_token(self, token: str) -> str:
        return token_hash(self.pepper, token)

    # The store by role (docs/architecture.md, store roles): each admin resource and CLI command
    # reaches the store through the one interface it needs, so mypy checks it uses nothing else.
    @property
    def key_store(self) -> KeyStore:
        return self.store

    @property
    def credential_store(self) -> CredentialStore:
        return self.store

    @property
    def budget_store(self) -> BudgetStore:
        return self.store

    @property
    def audit_store(self) -> AuditStore:
        return self.store

    @property
    def alert_store(self) -> AlertStore:
        return self.store

    @property
    def token_store(self) -> AdminTokenStore:
        return self.store

    @property
    def approval_store(self) -> ApprovalStore:
        return self.store


async def open_runtime(settings: Settings, *, create: bool, clock: Callable[[], int] | None = None) -> Runtime:
    """Open (and on first start create) the store and its keys; refuses a wrong master key."""
    if create:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o700)
    store = open_store(
        settings.database_url,
        settings.data_dir,
        migrate=settings.migrate,
        create=create,
        sqlite_synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        clock=clock,
        pg=PGOptions(
            pool_size=settings.pg_pool_size,
            pool_timeout_s=settings.pg_pool_timeout_s,
            statement_timeout_ms=settings.pg_statement_timeout_ms,
            connect_timeout_s=settings.pg_connect_timeout_s,
            report_pool_size=settings.report_pool_size,
            report_timeout_ms=settings.report_timeout_ms,
            max_waiters=settings.store_max_waiters,
            idle_tx_timeout_ms=settings.pg_idle_tx_timeout_ms,
        ),
    )
    try:
        canary = await store.get_meta("canary")
        first_start = canary is None
        key = load_or_create_master_key(settings.master_key, settings.master_key_path, create=first_start and create)
        sealer = Sealer(key)
        if first_start:
            canary = await store.put_meta_if_absent("canary", sealer.seal(_CANARY, "canary"))
        assert canary is not None
        try:
            ok = sealer.open(canary, "canary") == _CANARY
        except MasterKeyError:
            ok = False
        if not ok:
            raise MasterKeyError(
                "this master key cannot decrypt the store: every replica and CLI must use the key the "
                f"store was created with (KEYBRAKE_MASTER_KEY or {settings.master_key_path})"
            )
        pepper_blob = await store.get_meta("pepper")
        if pepper_blob is None:
            pepper_blob = await store.put_meta_if_absent("pepper", sealer.seal(secrets.token_bytes(32), "pepper"))
        pepper = sealer.open(pepper_blob, "pepper")
    except BaseException:
        await store.close()
        raise
    specs = registry.specs()  # the vendors registered now, built and served together
    return Runtime(settings, store, sealer, pepper, build_vendors(settings, specs), specs)


async def ensure_admin_token(rt: Runtime) -> str | None:
    """Make sure an admin token exists. Returns a newly generated bootstrap token to show once.

    The bootstrap token file (mode 0600) exists exactly while the bootstrap token works and is
    not replaced: once the operator has a token of their own (`KEYBRAKE_ADMIN_TOKEN` at start, or
    `keybrake admin-tokens create`) the bootstrap token is revoked and its file removed
    (`retire_bootstrap`, which prints one line on stderr saying so); at start the file is also
    removed when the token in it no longer authenticates (`forget_bootstrap_file`)."""
    now = rt.store.now_ms()
    if rt.settings.admin_token:
        h = rt.hash_token(rt.settings.admin_token)
        if await rt.store.admin_token_by_hash(h) is None:
            await rt.store.insert_admin_token(
                AdminTokenRecord(new_id("adm_"), "admin", "KEYBRAKE_ADMIN_TOKEN", now, None), h
            )
        await retire_bootstrap(rt, instead="KEYBRAKE_ADMIN_TOKEN")
        return None
    if await rt.store.list_admin_tokens():
        await forget_bootstrap_file(rt, always=False)
        return None
    token = new_token(ADMIN_PREFIX)
    await rt.store.insert_admin_token(
        AdminTokenRecord(new_id("adm_"), "admin", BOOTSTRAP_LABEL, now, None), rt.hash_token(token)
    )
    path = rt.settings.data_dir / BOOTSTRAP_FILE
    write_secret_file(path, token + "\n")  # 0600, replacing (never following) what was there
    return token


async def retire_bootstrap(rt: Runtime, *, instead: str) -> bool:
    """The operator has an admin token of their own: revoke the bootstrap token (every active
    token labelled `bootstrap`) and remove its file. When anything changed, print one line on
    stderr saying so and to use `instead` (e.g. "KEYBRAKE_ADMIN_TOKEN"). Returns whether it did."""
    revoked = [
        rec.id
        for rec in await rt.store.list_admin_tokens()
        if rec.label == BOOTSTRAP_LABEL and rec.revoked_at is None and await rt.store.revoke_admin_token(rec.id)
    ]
    removed = await forget_bootstrap_file(rt, always=True)
    if revoked or removed:
        what = "revoked the bootstrap admin token" if revoked else "the bootstrap admin token was already revoked"
        where = f" and removed {rt.settings.data_dir / BOOTSTRAP_FILE}" if removed else ""
        sys.stderr.write(f"keybrake: {what}{where}: use {instead} from now on\n")
        sys.stderr.flush()
    return bool(revoked or removed)


async def forget_bootstrap_file(rt: Runtime, *, always: bool) -> bool:
    """Remove the bootstrap token file when `always` (the operator has a token of their own) or
    when the token in it no longer authenticates (revoked). Returns whether a file was removed."""
    path = rt.settings.data_dir / BOOTSTRAP_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return False
    if not always and token:
        rec = await rt.store.admin_token_by_hash(rt.hash_token(token))
        if rec is not None and rec.revoked_at is None:
            return False
    path.unlink(missing_ok=True)
    return True


def announce_bootstrap_token(token: str, data_dir: Path) -> None:
    """Print a new bootstrap token once, to stderr only, with where it is kept and how to replace it."""
    sys.stderr.write(
        "\n  Keybrake bootstrap admin token (shown once; also kept in "
        f"{data_dir / BOOTSTRAP_FILE}, mode 0600,\n  until you revoke it or make your own with "
        f"`keybrake admin-tokens create --label NAME`, which revokes it):\n\n    {token}\n\n"
    )
    sys.stderr.flush()
