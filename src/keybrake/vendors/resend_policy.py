"""Resend's own policy fields (docs/policy.md, recipient scope): how the admin API takes them
(`ResendPolicyIn`, domains normalised to IDNA) and the parsed form the checks read (`ResendPolicy`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field, field_validator

from keybrake.core.destinations import policy_domain


class ResendPolicyIn(BaseModel):
    """Resend's policy fields as the admin API takes them; `RANKS`: where each renders among all fields."""

    RANKS: ClassVar[Mapping[str, int]] = {"allowed_to_domains": 120, "allowed_from_domains": 130}
    # Vendors defined by a file may declare these names too, for the same kind of check.
    SHARED: ClassVar[Mapping[str, str]] = {"allowed_to_domains": "email_domain", "allowed_from_domains": "email_domain"}

    allowed_to_domains: list[str] | None = Field(default=None, max_length=500)
    allowed_from_domains: list[str] | None = Field(default=None, max_length=500)

    @field_validator("allowed_to_domains", "allowed_from_domains")
    @classmethod
    def _domains(cls, v: list[str] | None) -> list[str] | None:
        return [policy_domain(d) for d in v] if v is not None else None


@dataclass(frozen=True)
class ResendPolicy:
    """Resend's policy fields as the checks read them: "example.com" or "*.example.com", IDNA."""

    allowed_to_domains: tuple[str, ...] | None = None
    allowed_from_domains: tuple[str, ...] | None = None

    @classmethod
    def from_store(cls, data: Mapping[str, Any]) -> ResendPolicy:
        """From the stored policy JSON (validated at the API edge by `ResendPolicyIn`)."""
        to, sender = data.get("allowed_to_domains"), data.get("allowed_from_domains")
        return cls(tuple(to) if to is not None else None, tuple(sender) if sender is not None else None)
