"""The admin API's key models for one set of vendors: every model that carries a key policy.

A key policy has the core fields and each vendor's own (`VendorSpec.policy_input`), so the models
that carry one — the inputs `KeyIn` and `KeyPatchIn`, the answers `Policy`, `Key`,
`IssuedKey` and `UpdatedKey`, the merge patch `KeyMergePatch` — are composed for the vendors an admin app serves
when the app is built (`build_admin_app`, from its Runtime's `vendor_specs`), and cached per set
of the vendors' policy models. Each composed model keeps the name, fields, field order and validators of the one in
`models` or `schemas` it refines; only its `policy` is typed with the vendors' fields.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, create_model

from keybrake.admin.models import KeyIn, KeyPatchIn
from keybrake.admin.policy import PolicyBase, policy_input_of, vendor_inputs
from keybrake.admin.schemas import EXTRA_MODELS, IssuedKey, Key, KeyMergePatch, Out, UpdatedKey, Usd
from keybrake.core.policy import USD_FIELDS
from keybrake.vendors.registry import VendorSpec


@dataclass(frozen=True)
class KeyModels:
    """The key models of one set of vendors (each a subclass of the model of the same name)."""

    policy_in: type[PolicyBase]  # `PolicyIn`: the policy as the API takes it
    key_in: type[KeyIn]
    key_patch_in: type[KeyPatchIn]
    policy: type[BaseModel]  # `Policy`: the policy as a key renders it, every field, null when unset
    key: type[Key]
    issued_key: type[IssuedKey]
    updated_key: type[UpdatedKey]
    key_merge_patch: type[KeyMergePatch]

    @property
    def fields(self) -> tuple[str, ...]:
        """Every policy field, in the order the API renders them."""
        return tuple(self.policy_in.model_fields)

    @property
    def extra_models(self) -> tuple[type[BaseModel], ...]:
        """The bodies routes read themselves, for the OpenAPI components (`openapi.describe`)."""
        return (self.key_merge_patch, *EXTRA_MODELS)


def _policy_model(policy_in: type[PolicyBase]) -> type[BaseModel]:
    """Every policy field, in the input model's order, null when unset (`keys.render_policy`);
    money as `Usd`, every other field typed as the input takes it."""
    fields: dict[str, Any] = {}
    for name, field in policy_in.model_fields.items():
        annotation: Any = Usd | None if name in USD_FIELDS else field.annotation
        fields[field.alias or name] = (annotation, Field(description=field.description))
    doc = "The key's policy as stored (docs/policy.md)"
    return create_model("Policy", __base__=Out, __doc__=doc, __module__=Out.__module__, **fields)


def _refined(model: type[Any], **fields: Any) -> Any:
    """`model` (same name, docstring and validators) with `fields` retyped."""
    return create_model(model.__name__, __base__=model, __doc__=model.__doc__, __module__=model.__module__, **fields)


@functools.cache
def _composed(inputs: tuple[type[BaseModel], ...]) -> KeyModels:
    policy_in = policy_input_of(inputs)
    policy = _policy_model(policy_in)
    return KeyModels(
        policy_in,
        _refined(KeyIn, policy=(policy_in, Field(default_factory=policy_in))),
        _refined(KeyPatchIn, policy=(policy_in, Field(default_factory=policy_in))),
        policy,
        _refined(Key, policy=(policy, ...)),
        _refined(IssuedKey, policy=(policy, ...)),
        _refined(UpdatedKey, policy=(policy, ...)),
        _refined(KeyMergePatch, policy=(policy_in | None, None)),
    )


def key_models(specs: Sequence[VendorSpec] | None = None) -> KeyModels:
    """The key models for the vendors `specs` (None: those registered now), cached per set of their
    policy models (`VendorSpec.policy_input`).
    Raises ValueError when the vendors' policy fields do not compose (`compose_policy_input`)."""
    return _composed(vendor_inputs(specs))
