"""Typed reads of `KEYBRAKE_*` environment variables for config.py: every refusal names the
variable and what it takes (a SettingsError)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from keybrake.core.approvals import MAX_APPROVAL_WAIT_S
from keybrake.core.timefmt import parse_duration_s


class SettingsError(ValueError):
    pass


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Why an upper bound exists, added to the refusal of a value over it.
HIGH_WHY = {
    "KEYBRAKE_REPORT_POOL_SIZE": ": each report at once holds a database connection and a thread of its own",
    **{
        name: ": about 24 days, the 32-bit range the databases take"
        for name in (
            "KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS",
            "KEYBRAKE_PG_STATEMENT_TIMEOUT_MS",
            "KEYBRAKE_PG_IDLE_TX_TIMEOUT_MS",
            "KEYBRAKE_REPORT_TIMEOUT_MS",
            "KEYBRAKE_RESERVE_DEADLINE_MS",
            "KEYBRAKE_PG_CONNECT_TIMEOUT",
        )
    },
}


# Every variable any `Env` was asked about (set or not): the settings Keybrake reads, so that a
# test can hold them against the documentation's table and feed each a bad value.
NAMES: set[str] = set()
# Variables that are not the server's settings: read by scripts/serve, the test suite, or the
# recipes in examples/ (where Keybrake is, which credential to issue on).
NOT_SETTINGS = (
    "KEYBRAKE_VENV",
    "KEYBRAKE_TEST_",
    "KEYBRAKE_URL",
    "KEYBRAKE_CREDENTIAL",
    "KEYBRAKE_VAULT_KEY",  # `keybrake mcp`: the run's vault key
    "KEYBRAKE_AGENT_RUN_ID",  # `keybrake mcp`: the run id sent with every call
)
# What a number setting may spell: plain ASCII digits with an optional sign and decimal point;
# no digits of another script ('١٢'), digit-group underscores ('1_0') or exponents ('1e3'),
# which Python's float() and Decimal() would quietly read.
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", re.ASCII)
# The longest duration a setting takes (a key lifetime): 100 years, well inside what a store's
# millisecond timestamps hold.
MAX_DURATION_S = 100 * 365 * 86_400
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$")


def is_host(value: str) -> bool:
    """An IP address (v4 or v6) or a DNS host name (letters, digits, hyphens, dots)."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return len(value) <= 253 and _HOST.fullmatch(value) is not None


class Env:
    """Typed reads of `KEYBRAKE_*` variables; every refusal names the variable and what it takes.

    Every read goes through one of these methods, which records the name (`NAMES`)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def has(self, name: str) -> bool:
        NAMES.add(name)
        return name in self.env

    def text(self, name: str) -> str | None:
        """The value, or None when unset or empty. Raises SettingsError for a blank value (only
        spaces or tabs): a path or list of nothing, never read as one."""
        NAMES.add(name)
        value = self.env.get(name) or None
        if value is not None and not value.strip():
            raise SettingsError(f"{name} is blank ({value!r}): unset it or give a value")
        return value

    def raw(self, name: str) -> str:
        """The value as set (KeyError when unset): for a reader that checks it itself."""
        NAMES.add(name)
        return self.env[name]

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        """One of `options` (compared in upper case). Raises SettingsError naming the variable and them."""
        value = self.raw(name).strip().upper()
        if value not in options:
            raise SettingsError(f"{name} must be one of {', '.join(options)} (got {value[:20]!r})")
        return value

    def host(self, name: str) -> str:
        """An IP address or host name to listen on. Raises SettingsError naming the variable."""
        value = self.raw(name).strip()
        if not is_host(value):
            raise SettingsError(f"{name} must be an IP address or a host name such as 127.0.0.1 (got {value[:60]!r})")
        return value

    def unknown(self) -> list[str]:
        """`KEYBRAKE_*` variables set that no reader asked about (a typo such as KEYBRAKE_PROT)."""
        return sorted(
            n for n in self.env if n.startswith("KEYBRAKE_") and n not in NAMES and not n.startswith(NOT_SETTINGS)
        )

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int:
        """A whole number in [low, high]. Raises SettingsError naming the variable and the bound."""
        raw = self.raw(name).strip()
        if not _INTEGER.fullmatch(raw):
            raise SettingsError(f"{name} must be a whole number (got {raw[:40]!r})")
        value = int(raw)
        if low is not None and value < low:
            raise SettingsError(f"{name} must be at least {low} (got {value})")
        if high is not None and value > high:
            raise SettingsError(f"{name} must be at most {high} (got {value}){HIGH_WHY.get(name, '')}")
        return value

    def number(self, name: str, low: float | None = None) -> float:
        """A finite number, at least `low`. Raises SettingsError naming the variable."""
        raw = self.raw(name).strip()
        if not _DECIMAL.fullmatch(raw):
            what = "a finite number in plain digits" if _float_or_none(raw) is not None else "a number"
            raise SettingsError(f"{name} must be {what} such as 2.5 (got {raw[:40]!r})")
        value = float(raw)
        if value in (float("inf"), float("-inf")):
            raise SettingsError(f"{name} must be a finite number (got {raw[:40]!r})")
        if low is not None and value < low:
            raise SettingsError(f"{name} must be at least {low} (got {value})")
        return value

    def boolean(self, name: str) -> bool:
        """On for 1/true/yes/on, off for 0/false/no/off (any case); anything else raises SettingsError."""
        raw = self.raw(name).strip().lower()
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        # A typo must never silently turn a safety setting off (or on).
        raise SettingsError(f"{name} must be one of {', '.join(_TRUE + _FALSE)} (got {raw[:40]!r})")

    def decimal(self, name: str) -> Decimal:
        """A non-negative finite decimal. Raises SettingsError naming the variable."""
        raw = self.raw(name).strip()
        if not _DECIMAL.fullmatch(raw):
            raise SettingsError(f"{name} must be a decimal number such as 0.0079 (got {raw[:40]!r})")
        value = Decimal(raw)
        if not value.is_finite() or value < 0:
            raise SettingsError(f"{name} must be a non-negative decimal (got {raw[:40]!r})")
        return value

    def duration(self, name: str) -> int:
        """Seconds, or 90s/15m/8h/7d. Raises SettingsError naming the variable."""
        raw = self.raw(name).strip()
        try:
            value = parse_duration_s(_num_or_str(raw))
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None
        if value > MAX_DURATION_S:
            raise SettingsError(f"{name} must be at most {MAX_DURATION_S // 86_400}d (got {raw[:40]!r})")
        return value


def _float_or_none(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def _num_or_str(v: str) -> int | str:
    return int(v) if v.isascii() and v.isdigit() else v


def parse_upstream_hosts(value: str) -> tuple[str, ...]:
    """`KEYBRAKE_UPSTREAM_HOSTS`: comma-separated host names, IP addresses or `*.suffix` entries,
    lower-cased. Raises SettingsError naming an entry that is none of these (a URL, a port)."""
    out: list[str] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if not is_host(entry.removeprefix("*.")):
            raise SettingsError(
                f"KEYBRAKE_UPSTREAM_HOSTS: {entry[:60]!r} is not a host name, an IP address or *.suffix "
                "(no scheme, port or path)"
            )
        out.append(entry)
    return tuple(out)


def parse_trusted_proxies(value: str) -> tuple[str, ...]:
    """`KEYBRAKE_TRUSTED_PROXIES`: comma-separated addresses or CIDR networks, each checked.

    Raises SettingsError naming an entry that is neither (uvicorn would silently never match it).
    """
    out: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            out.append(str(ipaddress.ip_network(entry, strict=True) if "/" in entry else ipaddress.ip_address(entry)))
        except ValueError:
            raise SettingsError(
                f"KEYBRAKE_TRUSTED_PROXIES: {entry!r} is not an IP address or a network like 10.0.0.0/8"
            ) from None
    return tuple(out)


def approval_env(e: Env) -> dict[str, Any]:
    """Human approval's settings (docs/approvals.md)."""
    kw: dict[str, Any] = {}
    if e.has("KEYBRAKE_APPROVAL_MAX_WAIT"):
        kw["approval_max_wait_s"] = wait = e.duration("KEYBRAKE_APPROVAL_MAX_WAIT")
        if not 1 <= wait <= MAX_APPROVAL_WAIT_S:
            raise SettingsError(
                f"KEYBRAKE_APPROVAL_MAX_WAIT must be between 1s and {MAX_APPROVAL_WAIT_S}s (got {wait}s): a held "
                "call keeps its connection and its reservation open while it waits"
            )
    if e.has("KEYBRAKE_APPROVAL_MAX_PENDING"):
        kw["approval_max_pending"] = e.integer("KEYBRAKE_APPROVAL_MAX_PENDING", 1, 1000)
    if value := e.text("KEYBRAKE_PUBLIC_URL"):
        kw["public_url"] = parse_public_url(value)
    if e.has("KEYBRAKE_CONSOLE_SESSION"):
        kw["console_session_s"] = ttl = e.duration("KEYBRAKE_CONSOLE_SESSION")
        if not 60 <= ttl <= 7 * 86400:
            raise SettingsError(
                f"KEYBRAKE_CONSOLE_SESSION must be between 1m and 7d (got {ttl}s): how long a web console sign-in lasts"
            )
    return kw


def parse_public_url(value: str) -> str:
    """KEYBRAKE_PUBLIC_URL: an http(s) URL with a host and nothing after the path, without the
    trailing slash. Raises SettingsError naming the variable."""
    try:
        u = urlsplit(value.strip())
    except ValueError as exc:
        raise SettingsError(f"KEYBRAKE_PUBLIC_URL is not a URL: {exc}") from None
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment or u.username or u.password:
        raise SettingsError(
            f"KEYBRAKE_PUBLIC_URL must be an http(s) URL such as https://keybrake.example.com, with no query, "
            f"fragment or credentials (got {value[:80]!r})"
        )
    return value.strip().rstrip("/")
