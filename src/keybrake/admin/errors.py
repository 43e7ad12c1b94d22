"""Admin API errors (docs/api.md): one status, one code, the offending field."""

from __future__ import annotations


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
