"""Twilio's own policy fields (docs/policy.md, destination scope): how the admin API takes them
(`TwilioPolicyIn`, with their validation messages), the parsed form the checks read
(`TwilioPolicy`), and the rule that ties them to `allowed_to_prefixes`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import phonenumbers
from pydantic import BaseModel, Field, field_validator

from keybrake.core.destinations import CALLING_CODE, CHANNEL, PHONE_PREFIX
from keybrake.vendors.twilio_voice import twiml_url_problem

_APPLICATION_SID = re.compile(r"^AP[0-9a-fA-F]{32}$")  # Twilio's spec pattern for ApplicationSid


class TwilioPolicyIn(BaseModel):
    """Twilio's policy fields as the admin API takes them; `RANKS`: where each renders among all fields."""

    RANKS: ClassVar[Mapping[str, int]] = {
        "allowed_to_prefixes": 110,
        "default_calling_code": 140,
        "max_call_seconds": 150,
        "allowed_twiml_urls": 160,
        "allowed_application_sids": 170,
    }

    allowed_to_prefixes: list[str] | None = Field(default=None, max_length=500)
    default_calling_code: str | None = None
    # Twilio's own TimeLimit maximum is 4 hours.
    max_call_seconds: Annotated[int, Field(ge=1, le=14400, strict=True)] | None = None
    # With allowed_to_prefixes: TwiML a call may fetch, and applications that may run a call.
    allowed_twiml_urls: list[Annotated[str, Field(min_length=1, max_length=2048)]] | None = Field(
        default=None, max_length=500
    )
    allowed_application_sids: list[str] | None = Field(default=None, max_length=500)

    @field_validator("allowed_to_prefixes")
    @classmethod
    def _prefixes(cls, v: list[str] | None) -> list[str] | None:
        for entry in v or []:
            if entry.lower() == "whatsapp:":
                raise ValueError("'whatsapp:' is removed before checking; list the number prefixes instead")
            if not (PHONE_PREFIX.match(entry) or CHANNEL.match(entry)):
                raise ValueError(
                    f"{entry!r} is neither an E.164 prefix such as '+1' or '+4420' nor a channel such as 'sip:'"
                )
        return v

    @field_validator("allowed_twiml_urls")
    @classmethod
    def _twiml_urls(cls, v: list[str] | None) -> list[str] | None:
        for entry in v or []:
            problem = twiml_url_problem(entry)
            if problem:
                raise ValueError(f"{entry[:100]!r} {problem}")
        return v

    @field_validator("allowed_application_sids")
    @classmethod
    def _application_sids(cls, v: list[str] | None) -> list[str] | None:
        for i, sid in enumerate(v or []):
            if not _APPLICATION_SID.match(sid):
                raise ValueError(f"entry {i} ({sid[:40]!r}) is not a Twilio application SID: AP and 32 hex digits")
        return v

    @field_validator("default_calling_code")
    @classmethod
    def _calling_code(cls, v: str | None) -> str | None:
        if v is not None and (
            not CALLING_CODE.match(v) or phonenumbers.region_code_for_country_code(int(v[1:])) == "ZZ"
        ):
            raise ValueError(f"{v!r} is not a country calling code such as '+1' or '+44'")
        return v


@dataclass(frozen=True)
class TwilioPolicy:
    """Twilio's policy fields as the checks read them (None: not set)."""

    allowed_to_prefixes: tuple[str, ...] | None = None  # E.164 prefixes ("+1") or channels ("sip:")
    default_calling_code: str | None = None
    max_call_seconds: int | None = None
    # TwiML a call may fetch on a key with allowed_to_prefixes: https URLs, or prefixes ending in "*"
    allowed_twiml_urls: tuple[str, ...] | None = None
    allowed_application_sids: frozenset[str] | None = None  # AP… SIDs whose TwiML may run a call

    @classmethod
    def from_store(cls, data: Mapping[str, Any]) -> TwilioPolicy:
        """From the stored policy JSON (validated at the API edge by `TwilioPolicyIn`)."""
        prefixes, urls, sids = (
            data.get(n) for n in ("allowed_to_prefixes", "allowed_twiml_urls", "allowed_application_sids")
        )
        return cls(
            allowed_to_prefixes=tuple(prefixes) if prefixes is not None else None,
            default_calling_code=data.get("default_calling_code"),
            max_call_seconds=data.get("max_call_seconds"),
            allowed_twiml_urls=tuple(urls) if urls is not None else None,
            allowed_application_sids=frozenset(sids) if sids is not None else None,
        )


def policy_problem(policy: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, message) when a stored policy sets a field that cannot take effect, else None."""
    for name in ("allowed_twiml_urls", "allowed_application_sids"):
        if name in policy and "allowed_to_prefixes" not in policy:
            # They only widen a destination scope: without one, calls are not destination-scoped.
            return (
                f"policy.{name}",
                f"policy.{name} takes effect only on a key with allowed_to_prefixes; set allowed_to_prefixes "
                "too, or leave it out",
            )
    return None
