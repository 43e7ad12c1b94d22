from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx._transports.default as _httpx_transport
import pytest

from tests import harness
from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResend, FakeResendThread
from tests.fakes.stripe_server import FakeStripe, FakeStripeThread
from tests.fakes.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioThread
from tests.harness import REAL_SECRET, KeybrakeThread
from tests.pg import Databases

# Which engine the core suite runs on: `sqlite` (default) or `postgres` (scripts/test runs both).
ENGINE = os.environ.get("KEYBRAKE_TEST_STORE", "sqlite")
if ENGINE not in ("sqlite", "postgres"):
    raise RuntimeError(f"KEYBRAKE_TEST_STORE must be sqlite or postgres, not {ENGINE!r}")


_SSL_CONTEXTS: dict[tuple[object, ...], object] = {}
_create_ssl_context = httpx.create_ssl_context  # the function httpx._transports.default calls


def _shared_ssl_context(verify: object = True, cert: object = None, trust_env: bool = True) -> object:
    """httpx builds a new SSL context (the CA bundle parsed, ≈ 50 ms of CPU) for every client,
    and `httpx.get(…)` is a client per call: the tests' thousands of loopback calls share one per
    setting instead. Test-only; nothing in Keybrake goes through this."""
    if not isinstance(verify, bool) or cert is not None:
        return _create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[arg-type]
    key = (verify, trust_env)
    if key not in _SSL_CONTEXTS:
        _SSL_CONTEXTS[key] = _create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    return _SSL_CONTEXTS[key]


_httpx_transport.create_ssl_context = _shared_ssl_context  # type: ignore[attr-defined,assignment]


def pytest_report_header() -> str:
    return f"keybrake store engine: {ENGINE}"


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[Databases]:
    dbs = Databases()
    yield dbs
    dbs.close()


@pytest.fixture
def pg_url(pg_databases: Databases) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test."""
    url = pg_databases.create()
    yield url
    pg_databases.drop(url)


@pytest.fixture(scope="session")
def _pass_database(pg_databases: Databases) -> str:
    return pg_databases.create()


@pytest.fixture
def pass_database(_pass_database: str, pg_databases: Databases) -> str:
    """The PostgreSQL pass's database, emptied for this test (no test sees another's rows)."""
    return pg_databases.emptied(_pass_database)


def _bounds_for(node: pytest.Item | pytest.Collector) -> dict[str, Any]:
    """Generous store bounds (tests/harness.py `LOADED_BOUNDS`) unless `node` is marked `timing`
    or `store_defaults`: those measure or rely on the documented defaults."""
    if node.get_closest_marker("timing") is None and node.get_closest_marker("store_defaults") is None:
        return harness.LOADED_BOUNDS
    return {}


@contextmanager
def _bounds(bounds: dict[str, Any]) -> Iterator[None]:
    """Set the store bounds every Keybrake started meanwhile takes: a KeybrakeThread's settings
    (`harness.STORE_BOUNDS`) and, as `keybrake serve` spells them (`harness.BOUND_ENV`), this
    process's environment — so a store any other way builds from it (a CLI command run in
    process, a subprocess that inherits it) takes them too. Restores both after."""
    before, saved = harness.STORE_BOUNDS, {name: os.environ.get(name) for name in harness.BOUND_ENV.values()}
    harness.STORE_BOUNDS = bounds
    for attr, name in harness.BOUND_ENV.items():
        if attr in bounds:
            os.environ[name] = str(bounds[attr])
        else:
            os.environ.pop(name, None)
    try:
        yield
    finally:
        harness.STORE_BOUNDS = before
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module", autouse=True)
def _module_store_bounds(request: pytest.FixtureRequest) -> Iterator[None]:
    """The bounds for a Keybrake a module-scoped fixture starts: set before any module fixture
    runs (autouse fixtures come first in their scope), from the module's own marks."""
    with _bounds(_bounds_for(request.node)):
        yield


@pytest.fixture(autouse=True)
def _store_bounds(request: pytest.FixtureRequest) -> Iterator[None]:
    """The bounds for every Keybrake a test starts, from the test's marks (module's restored after)."""
    with _bounds(_bounds_for(request.node)):
        yield


@pytest.fixture(autouse=True)
def _engine_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """On the PostgreSQL pass, every Keybrake a test starts uses a fresh database of its own."""
    if ENGINE != "postgres" or request.node.get_closest_marker("sqlite_only"):
        yield
        return
    url = request.getfixturevalue("pass_database")
    dbs: Databases = request.getfixturevalue("pg_databases")
    extra: list[str] = []

    def new_database() -> str:
        extra.append(dbs.create())
        return extra[-1]

    harness.DATABASE_URL, harness.NEW_DATABASE = url, new_database
    os.environ["KEYBRAKE_DATABASE_URL"] = url  # for CLI commands and spawned servers
    try:
        yield
    finally:
        harness.DATABASE_URL, harness.NEW_DATABASE = None, None
        harness.reset_installs()
        os.environ.pop("KEYBRAKE_DATABASE_URL", None)
        for other in extra:
            dbs.drop(other)


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripeThread(secret=REAL_SECRET) as t:
        yield t.fake


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilioThread]:
    with FakeTwilioThread() as t:
        yield t


@pytest.fixture
def kbt(tmp_path: Path, fake_twilio: FakeTwilioThread) -> Iterator[KeybrakeThread]:
    """A running Keybrake with a Twilio credential on the fake Twilio, reconciling every 0.2 s."""
    secret = {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}
    with KeybrakeThread(tmp_path / "data", vendor_settings={"twilio": {"reconcile_interval_s": 0.2}}) as server:
        server.add_credential(fake_twilio.base_url, name="twilio", secret=secret, vendor="twilio")
        yield server


@pytest.fixture
def fake_resend() -> Iterator[FakeResend]:
    with FakeResendThread() as t:
        yield t.fake


@pytest.fixture
def kbr(tmp_path: Path, fake_resend: FakeResend) -> Iterator[KeybrakeThread]:
    """A running Keybrake with a Resend credential (`resend`) pointing at the fake Resend."""
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake_resend.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        yield server


@pytest.fixture
def kb(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[KeybrakeThread]:
    """A running Keybrake with a Stripe credential pointing at the fake Stripe."""
    with KeybrakeThread(tmp_path / "data") as server:
        server.add_credential(fake_stripe.base_url)
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Pure unit and property tests (tests/core, tests/vendors) need no store: they run once, in the
    first pass, not again on PostgreSQL. The client library's, the recipes' and the docs' tests
    (tests/client, tests/examples, tests/docs) check the client side — the docs' pages start their
    own `./scripts/serve` on SQLite whatever the pass — so they too run once (`client_side`).
    Tests that drive Chromium (the `browser` fixture) are marked `browser`."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        parts = item.path.parts
        if "tests" not in parts:
            continue
        where = parts[parts.index("tests") + 1]
        if where in ("core", "vendors"):
            item.add_marker(pytest.mark.store_free)
        elif where in ("client", "examples", "docs"):
            item.add_marker(pytest.mark.client_side)
