"""Policy fields no vendor supports yet (`allow_self_revoke`, lifetime operation caps): refused
with 422 on every key, always `null` in a key's answer, and documented as such in
docs/policy.md and docs/api.md — so a key never looks as if it had them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness import KeybrakeThread

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _unsupported(kb: KeybrakeThread) -> list[str]:
    assert kb.app is not None
    supported = set().union(*(v.policy_fields for v in kb.app.rt.vendors.values()))
    return [name for name in kb.issue({"daily_usd_cap": 1})["policy"] if name not in supported]


def test_fields_no_vendor_supports_are_refused_null_and_documented(kb: KeybrakeThread) -> None:
    names = _unsupported(kb)
    assert "allow_self_revoke" in names
    policy_md = (DOCS / "policy.md").read_text()
    not_yet = policy_md[policy_md.index("### Recognised, but not yet supported") :]
    api_md = (DOCS / "api.md").read_text()
    for name in names:
        value = True if name.startswith("allow_") else 1  # well typed: refused for what it is
        with kb.admin() as c:
            r = c.post("/v1/keys", json={"vendor": "stripe", "label": "t", "policy": {name: value}})
        assert r.status_code == 422, (name, r.text)
        assert f"policy.{name} is not supported for stripe keys: no vendor supports it yet" in r.text
        assert re.search(rf"^\| [^|]*`{name}`[^|]*\|[^|]*\| not yet", not_yet, re.M), name
        assert f"`{name}`" in api_md[api_md.index("`policy` lists every policy field") :].split("\n-")[0], name
