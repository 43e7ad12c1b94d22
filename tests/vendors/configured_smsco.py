"""SMSCo, the vendor defined only by a file in docs/vendors.md's worked example: its definition
read out of that page (so the documented file is the tested one), installed from a directory as
an operator's would be, and its contract examples (tests/vendors/contract.py)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from keybrake.core.policy import Policy
from keybrake.vendors.configured import load
from tests.vendors.contract import Call, PolicyFieldExample, VendorExamples, form, js

DOC = Path(__file__).resolve().parents[2] / "docs" / "vendors.md"
_BLOCK = re.compile(r"<!-- worked-example: smsco.toml -->\n```toml\n(.*?)```", re.DOTALL)


def smsco_toml() -> str:
    """The worked example's file, exactly as docs/vendors.md shows it."""
    found = _BLOCK.search(DOC.read_text())
    assert found is not None, "docs/vendors.md lost its worked example"
    return found.group(1)


def write_smsco(directory: Path) -> Path:
    """The worked example as `directory/smsco.toml`, writable by its owner only (Keybrake refuses
    definitions others may write), whatever the umask."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    path = directory / "smsco.toml"
    path.write_text(smsco_toml())
    path.chmod(0o644)
    return path


@contextlib.contextmanager
def smsco_installed(directory: Path) -> Iterator[Path]:
    """SMSCo registered from `directory` (as KEYBRAKE_VENDORS_DIR), then unregistered."""
    path = write_smsco(directory)
    load.install(directory, explicit=True)
    try:
        yield path
    finally:
        load.uninstall()


MESSAGE = {"from": "+14155550199", "to": ["+14155550100", "+14155550101"], "text": "hi"}
UK = {**MESSAGE, "to": ["+442079460958"]}
EXAMPLES = VendorExamples(
    secret={"account": "AC" + "5" * 16, "token": "tok_" + "9f" * 12},
    bad_secret={"account": "AC1"},
    spellings=((js("POST", "/v1/messages", MESSAGE), ("v1", "messages")),),
    case_variant=js("POST", "/v1/Messages", MESSAGE),
    never_matches=None,
    matches="POST /v1/messages",
    guarded=(Call("GET", "/v1/keys"), Call("POST", "/v1/KEYS")),
    free=Call("GET", "/v1/messages/msg_1"),
    priced=js("POST", "/v1/messages", MESSAGE),
    priced_usd=15_800,  # two recipients at $0.0079
    unpriceable=Call("DELETE", "/v1/messages/msg_1"),
    scope=Policy(vendor_data={"allowed_smsco_prefixes": ["+1"]}),
    in_scope=form("POST", "/v1/messages", "from=%2B14155550199&to=%2B14155550100&to=%2B14155550101&text=hi"),
    out_of_scope=js("POST", "/v1/messages", UK),
    secret_answer=(Call("GET", "/v1/keys"), {"keys": [{"id": "key_1", "secret": "sk_s3cret"}]}, ("sk_s3cret",)),
    error_code_at=("error", "code"),
    error_message_at=("error", "message"),
    policy_fields=(
        PolicyFieldExample(
            "allowed_smsco_prefixes", ["+1"], ["44"], "is not an E.164 prefix", js("POST", "/v1/messages", UK)
        ),
        PolicyFieldExample(
            "allowed_smsco_senders",
            ["+14155550199"],
            [" +1415"],
            "is not a value",
            js("POST", "/v1/messages", {**MESSAGE, "from": "+14155550000"}),
        ),
    ),
)
