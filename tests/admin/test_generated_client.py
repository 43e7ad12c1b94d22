"""A client generated from /openapi.json by openapi-python-client drives the admin API with typed models.

The generator runs here (its CLI, pinned in requirements/dev.lock) on the document a real
`keybrake serve` answers on its admin listener; the generated package then adds a credential,
issues a key, reads the audit row of a proxied call and revokes the key. Any generator warning
or error fails the test: a schema it cannot type would make these calls answer untyped data.
Once, in the first pass: the API and its document do not depend on the store.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, REAL_SECRET, KeybrakeThread

pytestmark = pytest.mark.sqlite_only
PACKAGE = "keybrake_admin_api_client"


def _generate(spec: bytes, where: Path) -> Path:
    """Run the generator's CLI on `spec`; returns the directory holding the generated package."""
    (where / "spec.json").write_bytes(spec)
    (where / "config.yml").write_text("post_hooks: []\n")  # no formatter run: not needed to import
    cli = Path(sys.executable).parent / "openapi-python-client"
    args = ["generate", "--path", "spec.json", "--output-path", "client", "--config", "config.yml"]
    done = subprocess.run([str(cli), *args], cwd=where, capture_output=True, text=True, timeout=60, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Warning" not in report and "Error" not in report, report
    return where / "client"


@pytest.fixture
def generated(tmp_path: Path, kb_admin: KeybrakeThread) -> Iterator[Any]:
    """The generated package, imported from tmp_path (and forgotten afterwards)."""
    spec = httpx.get(f"{kb_admin.admin_url}/openapi.json", timeout=60).content
    sys.path.insert(0, str(_generate(spec, tmp_path)))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.pop(0)
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture
def kb_admin(tmp_path: Path) -> Iterator[KeybrakeThread]:
    """A Keybrake with its admin API on a listener of its own."""
    with KeybrakeThread(tmp_path / "data", admin_port=0) as server:
        yield server


def test_a_generated_client_adds_issues_reads_and_revokes(
    generated: Any, kb_admin: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    api = importlib.import_module(f"{PACKAGE}.api")
    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(base_url=kb_admin.admin_url, token=ADMIN_TOKEN)

    body = models.CredentialIn(vendor="stripe", name="gen", secret=REAL_SECRET, base_url=fake_stripe.base_url)
    credential = importlib.import_module(f"{api.__name__}.credentials.add_credential").sync(client=client, body=body)
    assert isinstance(credential, models.Credential), credential
    assert credential.name == "gen" and credential.active_keys == 0 and credential.secret_hint.startswith("sk_test_")

    policy = models.PolicyIn(daily_usd_cap="5.25", allowed_endpoints=["GET /v1/balance"])
    body = models.KeyIn(vendor="stripe", credential="gen", label="gen:agent", policy=policy)
    key = importlib.import_module(f"{api.__name__}.keys.issue_key").sync(client=client, body=body)
    assert isinstance(key, models.IssuedKey), key
    assert key.status == models.IssuedKeyStatus.ACTIVE and key.policy.daily_usd_cap == 5.25
    assert key.usage["daily_usd"].limit == 5.25 and key.key.startswith("vault_key_")

    agent = {"Authorization": f"Bearer {key.key}"}
    assert httpx.get(f"{kb_admin.url}/stripe/v1/balance", headers=agent).status_code == 200
    query_audit = importlib.import_module(f"{api.__name__}.audit.query_audit")
    audit = query_audit.sync(client=client, key_id=key.id, limit=10)
    assert isinstance(audit, models.PageAuditRow), audit
    assert [(r.key_id, r.verdict, r.path) for r in audit.data] == [(key.id, "allowed", "/v1/balance")]
    assert audit.next_cursor is None and audit.data[0].cost_usd == 0

    revoked = importlib.import_module(f"{api.__name__}.keys.revoke_key").sync(key.id, client=client, reason="done")
    assert isinstance(revoked, models.Key), revoked
    assert revoked.status == models.KeyStatus.REVOKED and revoked.revoke_reason == "done"
    assert httpx.get(f"{kb_admin.url}/stripe/v1/balance", headers=agent).status_code == 401

    missing = importlib.import_module(f"{api.__name__}.keys.get_key").sync("vk_missing", client=client)
    assert isinstance(missing, models.ErrorBody) and missing.error.code == "not_found"
    delete = importlib.import_module(f"{api.__name__}.credentials.delete_credential")
    gone = delete.sync("gen", client=client, revoke_keys=True)  # a boolean query parameter sent as `true`
    assert isinstance(gone, models.DeletedCredential) and gone.deleted is True and gone.revoked_keys == 0
