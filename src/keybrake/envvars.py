"""Typed reads of `KEYBRAKE_*` environment variables for config.py: every refusal names the
variable and what it takes (a SettingsError)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from keybrake.core.timefmt import parse_duration_s


class SettingsError(ValueError):
    pass


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Why an upper bound exists, added to the refusal of a value over it.
HIGH_WHY = {
    "KEYBRAKE_REPORT_POOL_SIZE": ": each report at once holds a database connection and a thread of its own",
}


class Env:
    """Typed reads of `KEYBRAKE_*` variables; every refusal names the variable and what it takes."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def has(self, name: str) -> bool:
        return name in self.env

    def text(self, name: str) -> str | None:
        """The value, or None when unset or empty."""
        return self.env.get(name) or None

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int:
        """A whole number in [low, high]. Raises SettingsError naming the variable and the bound."""
        raw = self.env[name].strip()
        if not (raw.isascii() and raw.lstrip("-").isdigit()):
            raise SettingsError(f"{name} must be a whole number (got {raw[:40]!r})")
        value = int(raw)
        if low is not None and value < low:
            raise SettingsError(f"{name} must be at least {low} (got {value})")
        if high is not None and value > high:
            raise SettingsError(f"{name} must be at most {high} (got {value}){HIGH_WHY.get(name, '')}")
        return value

    def number(self, name: str, low: float | None = None) -> float:
        raw = self.env[name].strip()
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number (got {raw[:40]!r})") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"{name} must be a finite number (got {raw[:40]!r})")
        if low is not None and value < low:
            raise SettingsError(f"{name} must be at least {low} (got {value})")
        return value

    def boolean(self, name: str) -> bool:
        raw = self.env[name].strip().lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        # A typo must never silently turn a safety setting off (or on).
        raise SettingsError(f"{name} must be one of {', '.join(_TRUE + _FALSE)} (got {raw[:40]!r})")

    def decimal(self, name: str) -> Decimal:
        raw = self.env[name].strip()
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise SettingsError(f"{name} must be a decimal number (got {raw[:40]!r})") from None
        if not value.is_finite() or value < 0:
            raise SettingsError(f"{name} must be a non-negative decimal (got {raw[:40]!r})")
        return value

    def duration(self, name: str) -> int:
        raw = self.env[name].strip()
        try:
            return parse_duration_s(_num_or_str(raw))
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None


def _num_or_str(v: str) -> int | str:
    return int(v) if v.isascii() and v.isdigit() else v
