"""`pip install './client[<vendor>]'` is enough: everything `keybrake_client` and each vendor
helper import comes from the distributions that the client and that extra declare (their
dependency closure), never from something that happens to be installed here. The server package
is not among them: an agent's environment never needs it."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.store_free  # no store of its own: runs once, in the first pass

VENDOR_MODULES = {
    "stripe": "stripe",
    "twilio": "keybrake_client.vendors.twilio",
    "resend": "resend",
    "shopify": "keybrake_client.vendors.shopify",
    "postmark": "keybrake_client.vendors.postmark",
    "sendgrid": "sendgrid",
    "segment": "segment.analytics",
}


def closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """The distributions `name[extras]` needs, itself included (as installed here)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(name, extras)]
    out: set[str] = set()
    while todo:
        dist_name, ex = todo.pop()
        if (canonicalize_name(dist_name), ex) in seen:
            continue
        seen.add((canonicalize_name(dist_name), ex))
        out.add(canonicalize_name(dist_name))
        for spec in md.distribution(dist_name).requires or []:
            req = Requirement(spec)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (ex or {""})):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return out


_ONLY_DECLARED = """
import importlib.abc, importlib.metadata as md, sys
allowed, module = set(sys.argv[1].split(",")), sys.argv[2]
owners = md.packages_distributions()
preloaded = {m.split(".")[0] for m in sys.modules}

class OnlyDeclared(importlib.abc.MetaPathFinder):
    # Hides every installed top-level package that no allowed distribution provides (and the
    # server package), as if it were not installed: optional imports (try: import x) fall back.
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in preloaded or top == "keybrake_client":
            return None
        dists = {d.lower().replace("_", "-") for d in owners.get(top, [])}
        if top == "keybrake" or (dists and not dists & allowed):
            raise ModuleNotFoundError(f"No module named {top!r} (not declared)", name=top)
        return None

sys.meta_path.insert(0, OnlyDeclared())
import keybrake_client
__import__(module)
from keybrake_client import Keybrake, denial
Keybrake("http://127.0.0.1:1", "kb_admin_x").close()
print("ok")
"""


def works_with_only(allowed: set[str], module: str) -> subprocess.CompletedProcess[str]:
    """Import `module` and build a client in a fresh interpreter that can import only the
    standard library and the `allowed` distributions."""
    return subprocess.run(
        [sys.executable, "-c", _ONLY_DECLARED, ",".join(sorted(allowed)), module], capture_output=True, text=True
    )


def test_the_client_alone_needs_only_httpx_and_pydantic() -> None:
    declared = {
        canonicalize_name(Requirement(r).name) for r in md.requires("keybrake-client") or [] if "extra" not in r
    }
    assert declared == {"httpx", "pydantic"}
    assert "keybrake" not in closure("keybrake-client")
    done = works_with_only(closure("keybrake-client"), "keybrake_client.denial")
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("extra", sorted(VENDOR_MODULES))
def test_each_extra_brings_what_its_helper_imports(extra: str) -> None:
    have = closure("keybrake-client", frozenset({extra}))
    done = works_with_only(have, VENDOR_MODULES[extra])
    assert done.stdout.strip() == "ok", f"[{extra}] is not enough: {done.stderr[-2000:]}"


def test_without_the_extra_the_helper_names_what_is_missing() -> None:
    done = works_with_only(closure("keybrake-client"), "keybrake_client.vendors.twilio")
    assert "No module named 'twilio'" in done.stderr
