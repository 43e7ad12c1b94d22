"""Settings from flags and `KEYBRAKE_*` environment variables, built once and passed down."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from keybrake.store.pg import POSTGRES_SCHEMES
from keybrake.timefmt import parse_duration_s
from keybrake.vendors.rates import DEFAULT_TWILIO_RATES, RatesError, TwilioRates, load_twilio_rates


class SettingsError(ValueError):
    pass


DATABASE_SCHEMES = (*POSTGRES_SCHEMES, "sqlite:///")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("keybrake-data")
    # Secrets (a database password, tokens, the master key) never appear in a repr or a log.
    database_url: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)
    master_key: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    migrate: bool = False
    default_key_ttl_s: int = 24 * 3600
    max_key_ttl_s: int = 30 * 24 * 3600
    max_body_bytes: int | None = None  # None: each vendor's default (1 MiB; 45 MiB for resend)
    max_response_bytes: int = 10 * 1024 * 1024
    upstream_timeout_s: float = 60.0
    upstream_connect_timeout_s: float = 5.0
    allow_insecure_upstream: bool = False
    upstream_hosts: tuple[str, ...] = ()
    fx_rates: Mapping[str, Decimal] = field(default_factory=lambda: {"usd": Decimal(1)})
    sqlite_synchronous: str = "NORMAL"
    unauth_audit_rate: int = 100
    require_usd_cap: bool = False
    metrics_public: bool = False
    graceful_shutdown_s: float = 30.0
    reconcile_interval_s: float = 60.0
    twilio_reconcile_interval_s: float = 60.0
    twilio_rates: TwilioRates = field(default_factory=lambda: DEFAULT_TWILIO_RATES)
    resend_rate_usd: Decimal = Decimal("0.0004")
    alert_interval_s: float = 10.0  # how often cap thresholds are scanned
    alert_retry_base_s: float = 5.0  # first retry delay of a failed alert delivery (doubles)
    audit_retention_days: int = 90  # 0 keeps every row forever
    audit_purge_export_dir: Path | None = None  # purged rows are appended here (JSON lines) first
    sqlite_busy_timeout_ms: int = 2000
    # PostgreSQL (KEYBRAKE_DATABASE_URL=postgresql://…): connections per replica, how long a
    # request waits for one, and the server-side limit on any one statement. Past either wait
    # the request fails closed (503 enforcement_unavailable).
    pg_pool_size: int = 16
    pg_pool_timeout_s: float = 2.0
    pg_statement_timeout_ms: int = 5000
    pg_connect_timeout_s: int = 3
    log_level: str = "INFO"
    # Listeners (docs/operations.md, "Listeners and limits"). The admin API on a listener of its
    # own (a TCP address or a unix socket) is the production layout: agents on the proxy port
    # cannot reach it at all, and it keeps connections of its own when the proxy port is flooded.
    admin_host: str | None = None
    admin_port: int | None = None
    admin_socket: Path | None = None
    # X-Forwarded-For / X-Forwarded-Proto are believed only from these addresses or networks.
    trusted_proxies: tuple[str, ...] = ()
    max_connections: int = 1000  # open connections on the proxy listener; past it: 503
    admin_max_connections: int = 64  # the same, on a separate admin listener
    max_header_bytes: int = 16 * 1024  # request line + headers; past it: 431
    # Proxied request bodies held in memory at once, all requests together; past it: 503.
    max_buffered_body_bytes: int = 512 * 1024 * 1024
    header_timeout_s: float = 10.0  # until a request's headers are complete; then closed
    keepalive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this

    @property
    def separate_admin(self) -> bool:
        """True when the admin API has a listener of its own (and is not served on the proxy port)."""
        return self.admin_port is not None or self.admin_socket is not None

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    def with_overrides(self, **kw: Any) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


def _bool(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on")


def load_fx_rates(path: str) -> dict[str, Decimal]:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"KEYBRAKE_FX_RATES_FILE {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError('KEYBRAKE_FX_RATES_FILE must hold a JSON object like {"eur": "1.09"}')
    rates = {"usd": Decimal(1)}
    for code, value in raw.items():
        if not isinstance(code, str) or len(code) != 3 or not code.isalpha():
            raise SettingsError(f"KEYBRAKE_FX_RATES_FILE: {code!r} is not a three-letter currency code")
        if not isinstance(value, str):
            raise SettingsError(f"KEYBRAKE_FX_RATES_FILE: the rate for {code} must be a decimal string")
        try:
            d = Decimal(value)
        except InvalidOperation as exc:
            raise SettingsError(f"KEYBRAKE_FX_RATES_FILE: {value!r} is not a decimal") from exc
        if not d.is_finite() or d <= 0:
            raise SettingsError(f"KEYBRAKE_FX_RATES_FILE: the rate for {code} must be positive")
        rates[code.lower()] = d
    return rates


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read every `KEYBRAKE_*` variable; an invalid value is an error, never ignored."""
    e = os.environ if env is None else env
    kw: dict[str, Any] = {}
    try:
        if "KEYBRAKE_HOST" in e:
            kw["host"] = e["KEYBRAKE_HOST"]
        if "KEYBRAKE_PORT" in e:
            kw["port"] = int(e["KEYBRAKE_PORT"])
        if "KEYBRAKE_DATA_DIR" in e:
            kw["data_dir"] = Path(e["KEYBRAKE_DATA_DIR"])
        if e.get("KEYBRAKE_DATABASE_URL"):
            kw["database_url"] = e["KEYBRAKE_DATABASE_URL"]
            if not kw["database_url"].startswith(DATABASE_SCHEMES):
                raise SettingsError(
                    "KEYBRAKE_DATABASE_URL must start with postgresql:// (scale-out) or sqlite:/// (embedded)"
                )
        if e.get("KEYBRAKE_ADMIN_TOKEN"):
            kw["admin_token"] = e["KEYBRAKE_ADMIN_TOKEN"]
        if e.get("KEYBRAKE_MASTER_KEY"):
            kw["master_key"] = e["KEYBRAKE_MASTER_KEY"]
        if e.get("KEYBRAKE_MASTER_KEY_FILE"):
            kw["master_key_file"] = Path(e["KEYBRAKE_MASTER_KEY_FILE"])
        if "KEYBRAKE_DEFAULT_KEY_TTL" in e:
            kw["default_key_ttl_s"] = parse_duration_s(_num_or_str(e["KEYBRAKE_DEFAULT_KEY_TTL"]))
        if "KEYBRAKE_MAX_KEY_TTL" in e:
            kw["max_key_ttl_s"] = parse_duration_s(_num_or_str(e["KEYBRAKE_MAX_KEY_TTL"]))
        if "KEYBRAKE_MAX_BODY_BYTES" in e:
            kw["max_body_bytes"] = int(e["KEYBRAKE_MAX_BODY_BYTES"])
        if "KEYBRAKE_MAX_RESPONSE_BYTES" in e:
            kw["max_response_bytes"] = int(e["KEYBRAKE_MAX_RESPONSE_BYTES"])
        if "KEYBRAKE_UPSTREAM_TIMEOUT" in e:
            kw["upstream_timeout_s"] = float(e["KEYBRAKE_UPSTREAM_TIMEOUT"])
        if "KEYBRAKE_ALLOW_INSECURE_UPSTREAM" in e:
            kw["allow_insecure_upstream"] = _bool(e["KEYBRAKE_ALLOW_INSECURE_UPSTREAM"])
        if e.get("KEYBRAKE_UPSTREAM_HOSTS"):
            kw["upstream_hosts"] = tuple(
                h.strip().lower() for h in e["KEYBRAKE_UPSTREAM_HOSTS"].split(",") if h.strip()
            )
        if e.get("KEYBRAKE_FX_RATES_FILE"):
            kw["fx_rates"] = load_fx_rates(e["KEYBRAKE_FX_RATES_FILE"])
        if "KEYBRAKE_SQLITE_SYNCHRONOUS" in e:
            sync = e["KEYBRAKE_SQLITE_SYNCHRONOUS"].upper()
            if sync not in ("NORMAL", "FULL"):
                raise SettingsError("KEYBRAKE_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
            kw["sqlite_synchronous"] = sync
        if "KEYBRAKE_UNAUTH_AUDIT_RATE" in e:
            kw["unauth_audit_rate"] = int(e["KEYBRAKE_UNAUTH_AUDIT_RATE"])
        if "KEYBRAKE_REQUIRE_USD_CAP" in e:
            kw["require_usd_cap"] = _bool(e["KEYBRAKE_REQUIRE_USD_CAP"])
        if "KEYBRAKE_METRICS_PUBLIC" in e:
            kw["metrics_public"] = _bool(e["KEYBRAKE_METRICS_PUBLIC"])
        if "KEYBRAKE_RECONCILE_INTERVAL" in e:
            kw["reconcile_interval_s"] = float(e["KEYBRAKE_RECONCILE_INTERVAL"])
            if kw["reconcile_interval_s"] <= 0:
                raise SettingsError("KEYBRAKE_RECONCILE_INTERVAL must be a positive number of seconds")
        if "KEYBRAKE_TWILIO_RECONCILE_INTERVAL" in e:
            kw["twilio_reconcile_interval_s"] = float(e["KEYBRAKE_TWILIO_RECONCILE_INTERVAL"])
            if kw["twilio_reconcile_interval_s"] <= 0:
                raise SettingsError("KEYBRAKE_TWILIO_RECONCILE_INTERVAL must be a positive number of seconds")
        if e.get("KEYBRAKE_TWILIO_RATES_FILE"):
            try:
                kw["twilio_rates"] = load_twilio_rates(Path(e["KEYBRAKE_TWILIO_RATES_FILE"]))
            except RatesError as exc:
                raise SettingsError(f"KEYBRAKE_TWILIO_RATES_FILE: {exc}") from exc
        if "KEYBRAKE_RESEND_RATE_USD" in e:
            rate = Decimal(e["KEYBRAKE_RESEND_RATE_USD"])
            if not rate.is_finite() or rate < 0:
                raise SettingsError("KEYBRAKE_RESEND_RATE_USD must be a non-negative decimal")
            kw["resend_rate_usd"] = rate
        for name, attr in (
            ("KEYBRAKE_ALERT_INTERVAL", "alert_interval_s"),
            ("KEYBRAKE_ALERT_RETRY_BASE", "alert_retry_base_s"),
        ):
            if name in e:
                kw[attr] = float(e[name])
                if kw[attr] <= 0:
                    raise SettingsError(f"{name} must be a positive number of seconds")
        if "KEYBRAKE_AUDIT_RETENTION_DAYS" in e:
            kw["audit_retention_days"] = int(e["KEYBRAKE_AUDIT_RETENTION_DAYS"])
            if kw["audit_retention_days"] < 0:
                raise SettingsError("KEYBRAKE_AUDIT_RETENTION_DAYS must be 0 (keep forever) or a number of days")
        if e.get("KEYBRAKE_AUDIT_PURGE_EXPORT_DIR"):
            kw["audit_purge_export_dir"] = Path(e["KEYBRAKE_AUDIT_PURGE_EXPORT_DIR"])
        if "KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS" in e:
            kw["sqlite_busy_timeout_ms"] = int(e["KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS"])
        for name, attr, conv, low in (
            ("KEYBRAKE_PG_POOL_SIZE", "pg_pool_size", int, 1),
            ("KEYBRAKE_PG_POOL_TIMEOUT", "pg_pool_timeout_s", float, 0.01),
            ("KEYBRAKE_PG_STATEMENT_TIMEOUT_MS", "pg_statement_timeout_ms", int, 1),
            ("KEYBRAKE_PG_CONNECT_TIMEOUT", "pg_connect_timeout_s", int, 1),
        ):
            if name in e:
                kw[attr] = conv(e[name])
                if kw[attr] < low:
                    raise SettingsError(f"{name} must be at least {low}")
        if "KEYBRAKE_LOG_LEVEL" in e:
            kw["log_level"] = e["KEYBRAKE_LOG_LEVEL"].upper()
        kw.update(_listener_env(e))
    except (ValueError, TypeError, InvalidOperation) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"invalid KEYBRAKE_* setting: {exc}") from exc
    s = Settings(**kw)
    if s.admin_token is not None and len(s.admin_token) < 32:
        raise SettingsError("KEYBRAKE_ADMIN_TOKEN must be at least 32 characters")
    check_listeners(s)
    return s


def _listener_env(e: Mapping[str, str]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if e.get("KEYBRAKE_ADMIN_HOST"):
        kw["admin_host"] = e["KEYBRAKE_ADMIN_HOST"]
    if e.get("KEYBRAKE_ADMIN_PORT"):
        kw["admin_port"] = int(e["KEYBRAKE_ADMIN_PORT"])
    if e.get("KEYBRAKE_ADMIN_SOCKET"):
        kw["admin_socket"] = Path(e["KEYBRAKE_ADMIN_SOCKET"])
    if e.get("KEYBRAKE_TRUSTED_PROXIES"):
        kw["trusted_proxies"] = parse_trusted_proxies(e["KEYBRAKE_TRUSTED_PROXIES"])
    for name, attr, conv, low in (
        ("KEYBRAKE_MAX_CONNECTIONS", "max_connections", int, 1),
        ("KEYBRAKE_ADMIN_MAX_CONNECTIONS", "admin_max_connections", int, 1),
        ("KEYBRAKE_MAX_HEADER_BYTES", "max_header_bytes", int, 1024),
        ("KEYBRAKE_MAX_BUFFERED_BODY_BYTES", "max_buffered_body_bytes", int, 1024 * 1024),
        ("KEYBRAKE_HEADER_TIMEOUT", "header_timeout_s", float, 0.1),
        ("KEYBRAKE_KEEPALIVE_TIMEOUT", "keepalive_timeout_s", float, 0.1),
    ):
        if name in e:
            kw[attr] = conv(e[name])
            if not kw[attr] >= low:  # also refuses NaN
                raise SettingsError(f"{name} must be at least {low}")
    return kw


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


def check_listeners(s: Settings) -> None:
    """Refuse listener settings that contradict each other (raises SettingsError)."""
    if s.admin_host is not None and s.admin_port is None:
        raise SettingsError("KEYBRAKE_ADMIN_HOST (--admin-host) needs KEYBRAKE_ADMIN_PORT (--admin-port)")
    if s.admin_port is not None and s.admin_socket is not None:
        raise SettingsError("give the admin listener a TCP port or a unix socket, not both")
    if s.admin_port is not None:
        if not 0 <= s.admin_port <= 65535:
            raise SettingsError("KEYBRAKE_ADMIN_PORT must be a port number")
        if s.admin_port == s.port and s.admin_port != 0 and (s.admin_host or "127.0.0.1") == s.host:
            raise SettingsError("the admin listener must not be the proxy listener (same host and port)")


def _num_or_str(v: str) -> int | str:
    return int(v) if v.isdigit() else v
