"""Admin API errors (docs/api.md): one status, one code, the offending field."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

# Segments pydantic adds to an error's location that name no field a user can send: validator
# and union tags (`function-after[_one(), BudgetScopeIn]`, `literal['all']`, `dict[str,str]`),
# scalar type tags of a union's members, and model class names.
_TAG = re.compile(r"[\[\]() ,]")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "json-or-python", "tagged-union"})


def field_path(loc: Sequence[int | str]) -> str:
    """The user's field path for a pydantic error location: `scope.label_prefix`, `policy.daily_usd_cap`,
    `items.0`. Drops `body` (FastAPI's) and every segment that is not a field (see _TAG, _TYPE_TAGS,
    the admin API's model class names); "" when nothing is left (the body as a whole). A field a
    user named in CapWords (a Twilio parameter `To`, a metadata key) is kept."""
    out: list[str] = []
    for i, seg in enumerate(loc):
        if isinstance(seg, int):
            out.append(str(seg))
            continue
        if i == 0 and seg == "body":
            continue
        if _TAG.search(seg) or seg in _TYPE_TAGS or seg in _model_names():
            continue
        out.append(seg)
    return ".".join(out)


@functools.cache
def _model_names() -> frozenset[str]:
    """Names of the admin API's pydantic models (they appear in union error locations)."""
    from pydantic import BaseModel

    from keybrake.admin import models  # imported late: the models raise errors of this module

    return frozenset(name for name, obj in vars(models).items() if isinstance(obj, type) and issubclass(obj, BaseModel))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def pydantic_message(msg: str) -> str:
    """A pydantic error message as the admin API shows it: without pydantic's "Value error, "."""
    return msg.removeprefix("Value error, ")


def validation(message: str, field: str | None) -> ApiError:
    return ApiError(422, "validation_error", message, field)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)
