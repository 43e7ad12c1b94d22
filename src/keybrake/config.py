"""Settings from flags and `KEYBRAKE_*` environment variables, built once and passed down."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from keybrake.crypto import MasterKeyError, master_key_bytes
from keybrake.envvars import Env, approval_env, parse_trusted_proxies, parse_upstream_hosts
from keybrake.envvars import SettingsError as SettingsError  # re-exported: callers import it from here
from keybrake.store.pg import POSTGRES_SCHEMES
from keybrake.vendors import registry
from keybrake.vendors.configured.load import install
from keybrake.vendors.configured.schema import DefinitionError
from keybrake.vendors.registry import VendorSetting

# The shortest audit retention allowed (days; 0 = off): a budget created or a key relabelled
# now seeds its month and day windows from the audit rows, and a local month (any time zone,
# with a DST hour) lasts at most 31 days and an hour; 35 leaves a margin (docs/operations.md).
MIN_RETENTION_DAYS = 35


# The longest audit retention (days): 100 years, well inside the stores' millisecond timestamps.
MAX_RETENTION_DAYS = 36_500


def retention_error(name: str, days: int) -> str | None:
    """Why `days` (named `name` in the message) is not a valid retention, or None when it is."""
    if days > MAX_RETENTION_DAYS:
        return f"{name} must be at most {MAX_RETENTION_DAYS} days (got {days}); 0 keeps every row"
    if 0 < days < MIN_RETENTION_DAYS:
        return (
            f"{name} must be 0 (keep every row) or at least {MIN_RETENTION_DAYS} days (got {days}): budgets"
            " seed their month windows from the audit rows, so a shorter retention would let spend pass a cap"
        )
    return None


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
    max_body_bytes: int | None = None  # None: each vendor's default (`Vendor.max_body_bytes`)
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
    # Each vendor's own settings (vendors/registry.py `VendorSetting`): vendor name → setting
    # name → parsed value, only those set; the vendor's default applies to the others.
    vendor_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Vendor definition files (docs/vendors.md, vendors defined by a file): KEYBRAKE_VENDORS_DIR,
    # None: `<data-dir>/vendors/` (`vendor_definitions`), which may be absent.
    vendors_dir: Path | None = None
    alert_interval_s: float = 10.0  # how often cap thresholds are scanned
    alert_retry_base_s: float = 5.0  # first retry delay of a failed alert delivery (doubles)
    alert_timeout_s: float = 5.0  # one alert POST: no answer within this (connect included) is a failure
    audit_retention_days: int = 90  # 0 keeps every row forever; otherwise at least MIN_RETENTION_DAYS
    audit_purge_export_dir: Path | None = None  # purged rows are appended here (JSON lines) first
    sqlite_busy_timeout_ms: int = 2000
    # PostgreSQL (KEYBRAKE_DATABASE_URL=postgresql://…): connections per replica, how long a
    # request waits for one, and the server-side limit on any one statement. Past either wait
    # the request fails closed (503 enforcement_unavailable).
    pg_pool_size: int = 16
    pg_pool_timeout_s: float = 2.0
    pg_statement_timeout_ms: int = 5000
    pg_connect_timeout_s: int = 3
    # Operator reports (audit pages and exports, spend): how many run at once, each on a
    # connection of its own (SQLite: a read-only connection in a worker thread; PostgreSQL: a
    # separate pool, so reports never take the connections reservations need), and how long one
    # statement of a report may run before it is cancelled (503).
    report_pool_size: int = 2
    report_timeout_ms: int = 30_000
    # The server rolls back a transaction whose client went silent this long (a cut link), so
    # no counter row stays locked; Keybrake's transactions never idle on purpose.
    pg_idle_tx_timeout_ms: int = 1000
    # Fail closed promptly (docs/operations.md, "Fail closed"): a proxied request that does not
    # hold its reservation this long after its headers arrived is answered 503
    # enforcement_unavailable and is never forwarded; at most this many store calls wait for a
    # connection beyond the pool (more → 503 at once).
    reserve_deadline_ms: int = 2000
    store_max_waiters: int = 128
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
    body_timeout_s: float = 60.0  # a request body must arrive whole within this, from the end of its head
    # Proxied request bodies held in memory at once, all requests together; past it: 503.
    max_buffered_body_bytes: int = 512 * 1024 * 1024
    header_timeout_s: float = 10.0  # until a request's headers are complete; then closed
    keepalive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    # Human approval (docs/approvals.md): the longest a held call waits (a policy's
    # approval_timeout_seconds is bounded by it), how many calls of one key may wait at once
    # (past it a call is refused, not held), and the address operators reach the admin API at,
    # for the approve / deny links in Slack messages (None: messages carry no links).
    approval_max_wait_s: int = 900
    console_session_s: int = 8 * 3600  # KEYBRAKE_CONSOLE_SESSION: a console sign-in lasts this long
    approval_max_pending: int = 10
    public_url: str | None = None

    @property
    def separate_admin(self) -> bool:
        """True when the admin API has a listener of its own (and is not served on the proxy port)."""
        return self.admin_port is not None or self.admin_socket is not None

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    def vendor_setting(self, vendor: str, name: str) -> Any:
        """A vendor setting's value: as set, else the registered vendor's default (KeyError: none such)."""
        spec = registry.spec(vendor)
        if spec is None:
            raise KeyError(vendor)
        return spec.values(self.vendor_settings.get(vendor))[name]

    def with_overrides(self, **kw: Any) -> Settings:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    @property
    def vendor_definitions(self) -> Path:
        """Where the operator's vendor definitions are read: KEYBRAKE_VENDORS_DIR or `<data-dir>/vendors/`."""
        return self.vendors_dir if self.vendors_dir is not None else self.data_dir / "vendors"


def with_configured_vendors(s: Settings, env: Mapping[str, str] | None = None) -> Settings:
    """Register the vendors defined by the files of `s.vendor_definitions` (all or nothing,
    replacing those a previous call registered) and read their settings from `env` (None: the
    process environment). Call it once the data directory is final, before the runtime is opened.
    Raises SettingsError naming the file, the key and what is wrong."""
    try:
        install(s.vendor_definitions, explicit=s.vendors_dir is not None)
    except DefinitionError as exc:
        raise SettingsError(f"vendor definition {exc}") from None
    return replace(s, vendor_settings=_vendor_env(Env(os.environ if env is None else env)))


def unknown_settings(env: Mapping[str, str] | None = None) -> list[str]:
    """`KEYBRAKE_*` variables of `env` (None: the process environment) that are no setting of
    this installation (a typo such as KEYBRAKE_PROT), sorted. Call it after `with_configured_vendors`:
    the settings of vendors defined by files are known from then on."""
    return Env(os.environ if env is None else env).unknown()


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


# Each report holds a connection of its own (PostgreSQL: counted in max_connections) and a
# worker thread: more than this at once only queues them inside the database.
MAX_REPORT_POOL_SIZE = 32
# Timeouts handed to a database are 32-bit there: SQLite reads a larger busy_timeout as 0 (no wait
# at all), PostgreSQL refuses a larger statement or idle-transaction timeout on every connection.
MAX_DB_INT = 2**31 - 1
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with its terminating NUL (Linux)
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read every `KEYBRAKE_*` variable; an invalid value is an error naming it, never ignored."""
    e = Env(os.environ if env is None else env)
    kw = _server_env(e)
    for name, attr, *bounds in (
        ("KEYBRAKE_MAX_BODY_BYTES", "max_body_bytes", 1),
        ("KEYBRAKE_MAX_RESPONSE_BYTES", "max_response_bytes", 1),
        ("KEYBRAKE_UNAUTH_AUDIT_RATE", "unauth_audit_rate", 0),
        ("KEYBRAKE_AUDIT_RETENTION_DAYS", "audit_retention_days", 0),
        ("KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS", "sqlite_busy_timeout_ms", 0, MAX_DB_INT),
        ("KEYBRAKE_PG_POOL_SIZE", "pg_pool_size", 1),
        ("KEYBRAKE_PG_STATEMENT_TIMEOUT_MS", "pg_statement_timeout_ms", 1, MAX_DB_INT),
        ("KEYBRAKE_PG_CONNECT_TIMEOUT", "pg_connect_timeout_s", 1, MAX_DB_INT),
        ("KEYBRAKE_REPORT_POOL_SIZE", "report_pool_size", 1, MAX_REPORT_POOL_SIZE),
        ("KEYBRAKE_REPORT_TIMEOUT_MS", "report_timeout_ms", 100, MAX_DB_INT),
        ("KEYBRAKE_PG_IDLE_TX_TIMEOUT_MS", "pg_idle_tx_timeout_ms", 100, MAX_DB_INT),
        ("KEYBRAKE_RESERVE_DEADLINE_MS", "reserve_deadline_ms", 50, MAX_DB_INT),
        ("KEYBRAKE_STORE_MAX_WAITERS", "store_max_waiters", 0),
    ):
        if e.has(name):
            kw[attr] = e.integer(name, *bounds)
    if (why := retention_error("KEYBRAKE_AUDIT_RETENTION_DAYS", kw.get("audit_retention_days", 0))) is not None:
        raise SettingsError(why)
    for name, attr, flow in (
        ("KEYBRAKE_UPSTREAM_TIMEOUT", "upstream_timeout_s", 0.1),
        ("KEYBRAKE_RECONCILE_INTERVAL", "reconcile_interval_s", 0.01),
        ("KEYBRAKE_ALERT_INTERVAL", "alert_interval_s", 0.01),
        ("KEYBRAKE_ALERT_RETRY_BASE", "alert_retry_base_s", 0.01),
        ("KEYBRAKE_ALERT_TIMEOUT", "alert_timeout_s", 0.1),
        ("KEYBRAKE_PG_POOL_TIMEOUT", "pg_pool_timeout_s", 0.01),
    ):
        if e.has(name):
            kw[attr] = e.number(name, flow)
    for name, attr in (
        ("KEYBRAKE_ALLOW_INSECURE_UPSTREAM", "allow_insecure_upstream"),
        ("KEYBRAKE_REQUIRE_USD_CAP", "require_usd_cap"),
        ("KEYBRAKE_METRICS_PUBLIC", "metrics_public"),
    ):
        if e.has(name):
            kw[attr] = e.boolean(name)
    if value := e.text("KEYBRAKE_UPSTREAM_HOSTS"):
        kw["upstream_hosts"] = parse_upstream_hosts(value)
    if value := e.text("KEYBRAKE_FX_RATES_FILE"):
        kw["fx_rates"] = load_fx_rates(value)
    if e.has("KEYBRAKE_SQLITE_SYNCHRONOUS"):
        kw["sqlite_synchronous"] = e.choice("KEYBRAKE_SQLITE_SYNCHRONOUS", ("NORMAL", "FULL"))
    kw["vendor_settings"] = _vendor_env(e)
    if value := e.text("KEYBRAKE_AUDIT_PURGE_EXPORT_DIR"):
        kw["audit_purge_export_dir"] = Path(value)
    if e.has("KEYBRAKE_LOG_LEVEL"):
        kw["log_level"] = e.choice("KEYBRAKE_LOG_LEVEL", _LOG_LEVELS)
    kw.update(_listener_env(e))
    s = Settings(**kw)
    check(s)
    return s


def _vendor_setting(e: Env, setting: VendorSetting) -> tuple[bool, Any]:
    """(whether set, parsed value) of one vendor setting; refusals name the variable."""
    if setting.kind == "file":
        path = e.text(setting.env)
        if path is None:
            return False, None
        assert setting.load is not None
        try:
            return True, setting.load(path)
        except ValueError as exc:
            raise SettingsError(f"{setting.env}: {exc}") from exc
    if not e.has(setting.env):
        return False, None
    if setting.kind == "number":
        return True, e.number(setting.env, setting.low)
    return True, e.decimal(setting.env)


def _vendor_env(e: Env) -> dict[str, dict[str, Any]]:
    """Every registered vendor's settings that are set: vendor name → setting name → value."""
    out: dict[str, dict[str, Any]] = {}
    for spec in registry.specs():
        for setting in spec.settings:
            given, value = _vendor_setting(e, setting)
            if given:
                out.setdefault(spec.name, {})[setting.name] = value
    return out


def _server_env(e: Env) -> dict[str, Any]:
    """Where Keybrake listens and keeps its data, its secrets, and key lifetimes."""
    kw: dict[str, Any] = {}
    if e.has("KEYBRAKE_HOST"):
        kw["host"] = e.host("KEYBRAKE_HOST")
    if e.has("KEYBRAKE_PORT"):
        kw["port"] = e.integer("KEYBRAKE_PORT", 0, 65535)
    if value := e.text("KEYBRAKE_DATA_DIR"):  # empty: the default, never the working directory
        kw["data_dir"] = Path(value)
        if kw["data_dir"].exists() and not kw["data_dir"].is_dir():
            raise SettingsError(f"KEYBRAKE_DATA_DIR {kw['data_dir']} exists and is not a directory")
    if url := e.text("KEYBRAKE_DATABASE_URL"):
        if not url.startswith(DATABASE_SCHEMES):
            raise SettingsError(
                "KEYBRAKE_DATABASE_URL must start with postgresql:// (scale-out) or sqlite:/// (embedded)"
            )
        kw["database_url"] = url
    for name, attr in (("KEYBRAKE_ADMIN_TOKEN", "admin_token"), ("KEYBRAKE_MASTER_KEY", "master_key")):
        if value := e.text(name):
            kw[attr] = value
    if "master_key" in kw:
        try:
            master_key_bytes(kw["master_key"], "KEYBRAKE_MASTER_KEY")
        except MasterKeyError as exc:
            raise SettingsError(str(exc)) from None
    if value := e.text("KEYBRAKE_VENDORS_DIR"):
        kw["vendors_dir"] = Path(value)
    if value := e.text("KEYBRAKE_MASTER_KEY_FILE"):
        kw["master_key_file"] = Path(value)
        if kw["master_key_file"].is_dir():
            raise SettingsError(f"KEYBRAKE_MASTER_KEY_FILE {value} is a directory: name the key file itself")
    for name, attr in (("KEYBRAKE_DEFAULT_KEY_TTL", "default_key_ttl_s"), ("KEYBRAKE_MAX_KEY_TTL", "max_key_ttl_s")):
        if e.has(name):
            kw[attr] = e.duration(name)
    kw.update(approval_env(e))
    return kw


def check(s: Settings) -> None:
    """Refuse settings that contradict each other or cannot work (raises SettingsError)."""
    if s.admin_token is not None and len(s.admin_token) < 32:
        raise SettingsError("KEYBRAKE_ADMIN_TOKEN must be at least 32 characters")
    if s.default_key_ttl_s > s.max_key_ttl_s:
        raise SettingsError(
            f"KEYBRAKE_DEFAULT_KEY_TTL ({s.default_key_ttl_s} s) is longer than KEYBRAKE_MAX_KEY_TTL "
            f"({s.max_key_ttl_s} s): every key issued without an expiry would be refused"
        )
    if s.audit_purge_export_dir is not None and not s.audit_purge_export_dir.is_dir():
        raise SettingsError(
            f"KEYBRAKE_AUDIT_PURGE_EXPORT_DIR {s.audit_purge_export_dir} is not a directory: create it first "
            "(purged rows are appended there before they are deleted)"
        )
    check_listeners(s)


def _listener_env(e: Env) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    # Set at all, even empty, they must be valid (as KEYBRAKE_HOST and KEYBRAKE_PORT): an empty
    # one read as unset would serve the admin API on the proxy port the operator meant to keep it off.
    if e.has("KEYBRAKE_ADMIN_HOST"):
        kw["admin_host"] = e.host("KEYBRAKE_ADMIN_HOST")
    if e.has("KEYBRAKE_ADMIN_PORT"):
        kw["admin_port"] = e.integer("KEYBRAKE_ADMIN_PORT", 0, 65535)
    if value := e.text("KEYBRAKE_ADMIN_SOCKET"):
        kw["admin_socket"] = Path(value)
        if len(str(kw["admin_socket"].absolute()).encode()) > MAX_SOCKET_PATH:
            raise SettingsError(
                f"KEYBRAKE_ADMIN_SOCKET {value[:60]!r}…: a unix socket path is at most {MAX_SOCKET_PATH} bytes "
                "(absolute); choose a shorter one"
            )
    if value := e.text("KEYBRAKE_TRUSTED_PROXIES"):
        kw["trusted_proxies"] = parse_trusted_proxies(value)
    for name, attr, low in (
        ("KEYBRAKE_MAX_CONNECTIONS", "max_connections", 1),
        ("KEYBRAKE_ADMIN_MAX_CONNECTIONS", "admin_max_connections", 1),
        ("KEYBRAKE_MAX_HEADER_BYTES", "max_header_bytes", 1024),
        ("KEYBRAKE_MAX_BUFFERED_BODY_BYTES", "max_buffered_body_bytes", 1024 * 1024),
    ):
        if e.has(name):
            kw[attr] = e.integer(name, low)
    for name, attr, flow in (
        ("KEYBRAKE_HEADER_TIMEOUT", "header_timeout_s", 0.1),
        ("KEYBRAKE_KEEPALIVE_TIMEOUT", "keepalive_timeout_s", 0.1),
        ("KEYBRAKE_BODY_TIMEOUT", "body_timeout_s", 1.0),
    ):
        if e.has(name):
            kw[attr] = e.number(name, flow)
    return kw


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
