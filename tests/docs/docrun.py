"""Run one Markdown page's `sh` and `python` blocks in order, as a reader would, and print a JSON
report: `python -m tests.docs.docrun PAGE --root DIR`.

DIR is a copy of the repository root (links to `scripts/`, `src/`, `tests/`, `requirements/`,
`.venv`, …; no `keybrake-data/`): the blocks run there, as the docs say, from the repository root.
The caller runs this in a private network namespace (`unshare -rn`), so the documented ports
(8080, 12111) are free whatever else runs on the machine. Only the documented placeholders
(`vault_key_…`, `vk_…`, `sk_test_…`) are replaced, by the value an earlier block printed; `$ADMIN`
is what the page itself sets (or, for a page that uses it without setting it, the bootstrap
token's header, as the README sets it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.docs.mdblocks import Block, expected_pattern, learn, runnable, server_blocks, squash, substitute
from tests.docs.sessions import Background, Bash, BlockFailed, Python

ADMIN_LINE = 'export ADMIN="Authorization: Bearer $(cat keybrake-data/bootstrap-admin-token)"'


def check_claims(block: Block, output: str) -> list[str]:
    """The block's `# → …` claims its output does not bear out."""
    flat = squash(output)
    return [claim for claim in block.expectations() if not expected_pattern(claim).search(flat)]


def run_page(page: Path, root: Path) -> list[dict[str, Any]]:
    """Run every runnable block of `page` from `root`; one report entry per block
    (`where`, `kind`, `note`, `ok`, `output`, `error`)."""
    env = {**os.environ, "PATH": f"{root / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    env.pop("KEYBRAKE_ADMIN_TOKEN", None)
    values: dict[str, str] = {}
    shell = Bash(root, env)
    python = Python(str(root / ".venv" / "bin" / "python"), root, env)
    servers: list[Background] = []
    report: list[dict[str, Any]] = []
    failed = admin_set = False
    try:
        for n, block in enumerate([*server_blocks(page), *runnable(page)]):
            entry: dict[str, Any] = {"where": block.where, "kind": block.kind, "note": block.note, "ok": None}
            report.append(entry)
            if block.kind == "not-run" or failed:
                continue
            code = substitute(block.code, values)
            try:
                if block.kind == "background":
                    server = Background(code, root, env, root / f"background-{n}.log")
                    servers.append(server)
                    out = server.wait_listening(block.note)
                elif block.lang == "sh":
                    if "$ADMIN" in code and "ADMIN=" not in code and not admin_set:
                        shell.run(ADMIN_LINE)
                    admin_set = admin_set or "ADMIN" in code
                    out = shell.run(code)
                else:
                    out = python.run(code)
            except BlockFailed as exc:
                entry.update(ok=False, error=str(exc))
                failed = True  # later blocks build on this one: stop here
                continue
            learn(out, values)
            bad = check_claims(block, out)
            entry.update(ok=not bad, output=out, error=f"claims not in the output: {bad}" if bad else "")
    finally:
        python.close()
        shell.close()
        for server in reversed(servers):
            server.close()
    return report


def main() -> None:
    """Parse the command line, run the page, print the report as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("page", type=Path)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    json.dump(run_page(args.page, args.root), sys.stdout)


if __name__ == "__main__":
    main()
