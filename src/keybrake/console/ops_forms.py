"""Form handling shared by the operations pages (approvals, budgets, alerts, credentials): a
posted form's fields turned into the admin API's own request models, and a validation failure
turned into the API's own message (`keybrake.admin.api._invalid`'s wording), so a page says what
the API would have said for the same values."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from keybrake.admin.errors import ApiError, field_path, pydantic_message

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], doc: dict[str, Any]) -> M:
    """`doc` validated as the API's request model `model`. Raises ApiError 422 `validation_error`
    naming the first failing field (`field: message`), as the API answers the same body. The
    message never carries the value sent (pydantic's messages name the rule, not the input)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise as_api_error(exc) from None


def as_api_error(exc: ValidationError) -> ApiError:
    """The first error of `exc` as the admin API words it: 422 with `field: message`."""
    err = exc.errors()[0]
    where = field_path(err["loc"]) or None
    msg = pydantic_message(str(err["msg"]))
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif err.get("type") == "missing":
        msg = "is required"
    return ApiError(422, "validation_error", f"{where}: {msg}" if where else msg, where)


def optional(value: str) -> str | None:
    """A text field's value, None when left empty (an omitted field of the API's body)."""
    return value if value != "" else None


def count(value: str) -> int | str | None:
    """A whole-number field: its int, None when empty, the text itself when it is no number (the
    model then refuses it with the API's message)."""
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return value
