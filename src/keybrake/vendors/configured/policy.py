"""The admin API's input model for a configured vendor's scope fields (docs/vendors.md,
`[[scope]]`): each field a list of strings, validated by its match kind, created per definition
with `pydantic.create_model`. `RANKS` places them after the core fields; `SHARED` lets another
vendor declare a field of the same name and kind (e.g. `allowed_to_domains`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, Field, create_model, field_validator

from keybrake.core.destinations import policy_domain
from keybrake.vendors.configured import schema as s

FIRST_RANK = 300
_PREFIX = re.compile(r"^\+[1-9][0-9]{0,14}$")


def _domains(cls: Any, v: list[str] | None) -> list[str] | None:
    return [policy_domain(d) for d in v] if v is not None else None


def _e164(cls: Any, v: list[str] | None) -> list[str] | None:
    for entry in v or []:
        if not _PREFIX.match(entry):
            raise ValueError(f"{entry[:40]!r} is not an E.164 prefix such as '+1' or '+4420'")
    return v


def _texts(cls: Any, v: list[str] | None) -> list[str] | None:
    for entry in v or []:
        if not entry or entry != entry.strip() or len(entry) > 200:
            raise ValueError(f"{entry[:40]!r} is not a value: 1 to 200 characters without surrounding blanks")
    return v


VALIDATORS: dict[str, Callable[[Any, list[str] | None], list[str] | None]] = {
    "email_domain": _domains,
    "e164_prefix": _e164,
    "exact": _texts,
    "prefix": _texts,
}


def policy_input(definition: s.Definition) -> type[BaseModel] | None:
    """The model of `definition`'s scope fields (None: it has none)."""
    kinds: dict[str, str] = {}
    for sc in definition.scopes:
        kinds.setdefault(sc.field, sc.match)
    if not kinds:
        return None
    fields: dict[str, Any] = {f: (list[str] | None, Field(default=None, max_length=500)) for f in kinds}
    validators: dict[str, Any] = {
        f"_check_{f}": field_validator(f)(classmethod(VALIDATORS[kind])) for f, kind in kinds.items()
    }
    model: type[BaseModel] = create_model(
        f"{definition.name.title().replace('_', '')}PolicyIn",
        __doc__=f"{definition.title}'s scope fields as the admin API takes them (from its definition).",
        __validators__=validators,
        **fields,
    )
    # Class variables the admin API reads (admin/policy.py compose_policy_input), not fields.
    setattr(model, "RANKS", MappingProxyType({f: FIRST_RANK + i for i, f in enumerate(kinds)}))  # noqa: B010
    setattr(model, "SHARED", MappingProxyType({f: k for f, k in kinds.items() if k == "email_domain"}))  # noqa: B010
    return model
