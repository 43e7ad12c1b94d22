"""Stripe's own policy field (docs/policy.md, account scope): `account_allowlist`, the connected
accounts (or "self") a key may act as, as the admin API takes it and as the checks read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, Field


class StripePolicyIn(BaseModel):
    """Stripe's policy field as the admin API takes it; `RANKS`: where it renders among all fields."""

    RANKS: ClassVar[Mapping[str, int]] = {"account_allowlist": 90}

    account_allowlist: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = None


@dataclass(frozen=True)
class StripePolicy:
    """Stripe's policy field as the checks read it (None: not set)."""

    account_allowlist: frozenset[str] | None = None

    @classmethod
    def from_store(cls, data: Mapping[str, Any]) -> StripePolicy:
        """From the stored policy JSON (validated at the API edge by `StripePolicyIn`)."""
        accounts = data.get("account_allowlist")
        return cls(frozenset(accounts) if accounts is not None else None)
