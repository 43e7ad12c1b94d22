"""KEYBRAKE_* settings added for Twilio and Resend: parsed, or refused with a clear message."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from keybrake.config import SettingsError, from_env


def test_vendor_settings_are_parsed(tmp_path: Path) -> None:
    rates = tmp_path / "twilio-rates.json"
    rates.write_text(json.dumps({"sms": {"US": "0.0079", "default": "0.09"}}))
    s = from_env(
        {
            "KEYBRAKE_TWILIO_RECONCILE_INTERVAL": "15",
            "KEYBRAKE_RESEND_RATE_USD": "0.00035",
            "KEYBRAKE_TWILIO_RATES_FILE": str(rates),
            "KEYBRAKE_MAX_BODY_BYTES": "2048",
        }
    )
    assert s.vendor_setting("twilio", "reconcile_interval_s") == 15.0
    assert s.vendor_setting("resend", "rate_usd") == Decimal("0.00035")
    assert s.vendor_setting("twilio", "rates").rate("sms", "US") == Decimal("0.0079")
    assert s.max_body_bytes == 2048
    pg = from_env(
        {
            "KEYBRAKE_DATABASE_URL": "postgres://kb:hunter2@db:5432/kb",
            "KEYBRAKE_PG_POOL_SIZE": "4",
            "KEYBRAKE_PG_POOL_TIMEOUT": "0.5",
            "KEYBRAKE_PG_STATEMENT_TIMEOUT_MS": "250",
            "KEYBRAKE_PG_CONNECT_TIMEOUT": "2",
        }
    )
    assert (pg.pg_pool_size, pg.pg_pool_timeout_s, pg.pg_statement_timeout_ms, pg.pg_connect_timeout_s) == (
        4,
        0.5,
        250,
        2,
    )
    assert "hunter2" not in repr(pg)  # the password never reaches a log through the settings
    defaults = from_env({})
    assert defaults.max_body_bytes is None and defaults.vendor_setting("resend", "rate_usd") == Decimal("0.0004")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "0", "at least"),
        ("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "soon", "must be a number"),
        ("KEYBRAKE_RESEND_RATE_USD", "-1", "non-negative"),
        ("KEYBRAKE_RESEND_RATE_USD", "four cents", "must be a decimal"),
        ("KEYBRAKE_TWILIO_RATES_FILE", "/nonexistent/rates.json", "KEYBRAKE_TWILIO_RATES_FILE"),
        ("KEYBRAKE_DATABASE_URL", "mysql://db/keybrake", "postgresql://"),
        ("KEYBRAKE_PG_POOL_SIZE", "0", "at least 1"),
        ("KEYBRAKE_PG_POOL_SIZE", "many", "whole number"),
        ("KEYBRAKE_PG_STATEMENT_TIMEOUT_MS", "0", "at least 1"),
        ("KEYBRAKE_PG_CONNECT_TIMEOUT", "0", "at least 1"),
    ],
)
def test_bad_vendor_settings_are_refused(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words) as info:
        from_env({name: value})
    assert name in str(info.value)  # the error names the variable


@pytest.mark.parametrize(
    ("env", "words"),
    [
        # found by the newcomer run: a typo silently turned a safety setting off
        ({"KEYBRAKE_REQUIRE_USD_CAP": "enabled"}, "KEYBRAKE_REQUIRE_USD_CAP must be one of"),
        ({"KEYBRAKE_METRICS_PUBLIC": "maybe"}, "KEYBRAKE_METRICS_PUBLIC must be one of"),
        ({"KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "maybe"}, "KEYBRAKE_ALLOW_INSECURE_UPSTREAM must be one of"),
        ({"KEYBRAKE_PORT": "abc"}, "KEYBRAKE_PORT must be a whole number"),
        ({"KEYBRAKE_UPSTREAM_TIMEOUT": "inf"}, "KEYBRAKE_UPSTREAM_TIMEOUT must be a finite number"),
        ({"KEYBRAKE_LOG_LEVEL": "bogus"}, "KEYBRAKE_LOG_LEVEL must be one of"),
        ({"KEYBRAKE_UNAUTH_AUDIT_RATE": "-1"}, "KEYBRAKE_UNAUTH_AUDIT_RATE must be at least 0"),
        ({"KEYBRAKE_MAX_KEY_TTL": "1h"}, "KEYBRAKE_DEFAULT_KEY_TTL .* is longer than KEYBRAKE_MAX_KEY_TTL"),
        ({"KEYBRAKE_AUDIT_PURGE_EXPORT_DIR": "/nonexistent/x"}, "is not a directory"),
        ({"KEYBRAKE_DEFAULT_KEY_TTL": "soon"}, "KEYBRAKE_DEFAULT_KEY_TTL"),
    ],
)
def test_every_bad_setting_names_itself(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        from_env(env)


def test_booleans_take_their_documented_spellings() -> None:
    for raw, want in (("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("off", False)):
        assert from_env({"KEYBRAKE_METRICS_PUBLIC": raw}).metrics_public is want


def test_listener_settings_are_parsed() -> None:
    s = from_env(
        {
            "KEYBRAKE_ADMIN_PORT": "9090",
            "KEYBRAKE_TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7 ,::1",
            "KEYBRAKE_MAX_CONNECTIONS": "2000",
            "KEYBRAKE_ADMIN_MAX_CONNECTIONS": "16",
            "KEYBRAKE_MAX_HEADER_BYTES": "32768",
            "KEYBRAKE_HEADER_TIMEOUT": "5",
            "KEYBRAKE_KEEPALIVE_TIMEOUT": "2.5",
        }
    )
    assert s.separate_admin and (s.admin_host, s.admin_port, s.admin_socket) == (None, 9090, None)
    assert s.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "::1")
    assert (s.max_connections, s.admin_max_connections, s.max_header_bytes) == (2000, 16, 32768)
    assert (s.header_timeout_s, s.keepalive_timeout_s) == (5.0, 2.5)
    sock = from_env({"KEYBRAKE_ADMIN_SOCKET": "/run/keybrake/admin.sock"})
    assert sock.separate_admin and sock.admin_socket == Path("/run/keybrake/admin.sock")
    defaults = from_env({})
    assert not defaults.separate_admin and defaults.trusted_proxies == ()
    assert (defaults.max_connections, defaults.max_header_bytes, defaults.header_timeout_s) == (1000, 16384, 10.0)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KEYBRAKE_TRUSTED_PROXIES": "10.0.0.1/8"}, "not an IP address or a network"),
        ({"KEYBRAKE_TRUSTED_PROXIES": "proxy.internal"}, "not an IP address or a network"),
        ({"KEYBRAKE_TRUSTED_PROXIES": "*"}, "not an IP address or a network"),
        ({"KEYBRAKE_ADMIN_HOST": "127.0.0.1"}, "needs KEYBRAKE_ADMIN_PORT"),
        ({"KEYBRAKE_ADMIN_PORT": "9090", "KEYBRAKE_ADMIN_SOCKET": "/tmp/a.sock"}, "not both"),
        ({"KEYBRAKE_ADMIN_PORT": "8080"}, "must not be the proxy listener"),
        ({"KEYBRAKE_ADMIN_PORT": "70000"}, "KEYBRAKE_ADMIN_PORT must be at most 65535"),
        ({"KEYBRAKE_MAX_CONNECTIONS": "0"}, "at least 1"),
        ({"KEYBRAKE_MAX_HEADER_BYTES": "100"}, "at least 1024"),
        ({"KEYBRAKE_HEADER_TIMEOUT": "nan"}, "finite"),
        ({"KEYBRAKE_KEEPALIVE_TIMEOUT": "0"}, "at least"),
    ],
)
def test_bad_listener_settings_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        from_env(env)


def test_the_fd_budget_covers_every_listener_the_store_and_upstream() -> None:
    from keybrake.config import Settings
    from keybrake.listener import FD_MARGIN, UPSTREAM_CONNECTIONS, ceiling, fd_budget

    one = Settings(max_connections=1000)
    assert fd_budget(one) == ceiling(1000) + 8 + UPSTREAM_CONNECTIONS + FD_MARGIN == 1428
    two = Settings(max_connections=1000, admin_port=9090, database_url="postgresql://db/kb", pg_pool_size=16)
    assert fd_budget(two) == ceiling(1000) + ceiling(64) + 16 + UPSTREAM_CONNECTIONS + FD_MARGIN
