"""Exceptions the client raises."""

from __future__ import annotations


class KeybrakeError(Exception):
    """Base of every error this package raises."""


class KeybrakeAPIError(KeybrakeError):
    """The admin API answered an error: `status` (HTTP), `code` (e.g. `not_found`, `validation_error`,
    `conflict`, `admin_token_invalid`), `message`, and `field` (the dotted path of the offending
    field or query parameter, or None)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"{status} {code}: {message}{where}")


class KeybrakeConnectionError(KeybrakeError):
    """Keybrake could not be reached, or did not answer within the timeout (after any retries)."""
