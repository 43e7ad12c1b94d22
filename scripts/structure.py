"""Measure the code's structure: module sizes, long functions, vendor names outside vendors/, the
admin API's OpenAPI operations with response schemas, and the import-layer contracts.

    .venv/bin/python scripts/structure.py            # this checkout
    .venv/bin/python scripts/structure.py --root DIR # another checkout (its src/ is imported)

    .venv/bin/python scripts/structure.py --no-openapi --tests  # as scripts/test runs it

Exits 1 when a module under src/ exceeds --max-module lines (400) or a function exceeds
--max-function lines (80): docs/architecture.md, size rules. With --tests the same limits hold
for tests/ and bench/ (their offenders are listed and count toward the exit status). Lines are
counted as `wc -l` does; a function spans its `def` line to its last line, docstring included.
The last line printed sums up the size rules' result.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import io
import json
import statistics
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

VENDOR_NAMES = ("stripe", "twilio", "resend")


def python_files(root: Path) -> list[Path]:
    """Source modules of the package and of the client library, migrations' generated versions excepted."""
    found = [p for p in (root / "src" / "keybrake").rglob("*.py") if "migrations/versions" not in p.as_posix()]
    return sorted([*found, *(root / "client" / "src" / "keybrake_client").rglob("*.py")])


def long_functions(path: Path, limit: int) -> list[tuple[int, str]]:
    """(lines, qualified name) of every function in `path` longer than `limit` lines."""
    tree = ast.parse(path.read_text())
    out: list[tuple[int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (child.end_lineno or child.lineno) - child.lineno + 1
                if n > limit:
                    out.append((n, f"{prefix}{child.name}"))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(tree, "")
    return out


def oversized(
    root: Path, folder: Path, max_module: int, max_function: int
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(modules over `max_module` lines, functions over `max_function` lines) under `folder`, each
    as (lines, path relative to `root`[:qualified function name]), longest first."""
    files = sorted(folder.rglob("*.py"))
    rel = {p: p.relative_to(root).as_posix() for p in files}
    big = sorted(((n, rel[p]) for p in files if (n := len(p.read_text().splitlines())) > max_module), reverse=True)
    longs = sorted(((n, f"{rel[p]}:{f}") for p in files for n, f in long_functions(p, max_function)), reverse=True)
    return big, longs


def names_a_vendor(path: Path) -> bool:
    """Whether code (names and strings, not comments or docstrings) names a built-in vendor."""
    text = path.read_text()
    docstrings = {
        (n.body[0].lineno, n.body[0].col_offset)
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
        and isinstance(n.body[0].value.value, str)
    }
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and tok.start in docstrings:
            continue
        if tok.type in (tokenize.NAME, tokenize.STRING) and any(v in tok.string.lower() for v in VENDOR_NAMES):
            return True
    return False


def openapi_counts(root: Path) -> tuple[int, int]:
    """(operations, operations whose 2xx answer declares a schema) of the admin API's /openapi.json."""
    code = f"""
import asyncio, json, sys
sys.path.insert(0, {str(root / "src")!r})
from keybrake.config import Settings
from keybrake.runtime import open_runtime
from keybrake.app import KeybrakeApp
async def main():
    rt = await open_runtime(Settings(data_dir=__import__("pathlib").Path(sys.argv[1])), create=True)
    app = KeybrakeApp(rt)
    spec = app.admin.openapi()
    await rt.store.close()
    print(json.dumps(spec))
asyncio.run(main())
"""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, check=True).stdout
    spec = json.loads(out.strip().splitlines()[-1])
    ops = typed = 0
    for item in spec.get("paths", {}).values():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            ops += 1
            ok = [r for s, r in op.get("responses", {}).items() if s.startswith("2")]
            if any(_named(c.get("schema") or {}) for r in ok for c in r.get("content", {}).values()):
                typed += 1
    return ops, typed


def _named(schema: dict[str, object]) -> bool:
    """A schema that describes fields: a model reference or properties (`{}` or a bare `object` does not)."""
    text = json.dumps(schema)
    return '"$ref"' in text or '"properties"' in text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--max-module", type=int, default=400)
    ap.add_argument("--max-function", type=int, default=80)
    ap.add_argument("--no-openapi", action="store_true", help="skip building the admin app")
    ap.add_argument("--no-imports", action="store_true", help="skip the import contracts (lint-imports)")
    ap.add_argument("--tests", action="store_true", help="hold tests/ and bench/ to the size limits too")
    args = ap.parse_args()
    root: Path = args.root.resolve()
    files = python_files(root)
    sizes = {p: len(p.read_text().splitlines()) for p in files}
    rel = {p: p.relative_to(root).as_posix() for p in files}
    values = sorted(sizes.values())
    big = sorted(((n, rel[p]) for p, n in sizes.items() if n > args.max_module), reverse=True)
    print(f"modules: {len(values)}  median {statistics.median(values):.0f}  "
          f"p90 {values[int(len(values) * 0.9)]}  max {values[-1]} lines")  # fmt: skip
    print(f"modules over {args.max_module} lines: {len(big)}")
    for n, name in big:
        print(f"  {n:5d} {name}")
    longs = sorted(((n, f"{rel[p]}:{f}") for p in files for n, f in long_functions(p, args.max_function)), reverse=True)
    print(f"functions over {args.max_function} lines: {len(longs)}")
    for n, name in longs:
        print(f"  {n:5d} {name}")
    n_big, n_long = len(big), len(longs)
    for extra in ("tests", "bench"):
        o_big, o_long = oversized(root, root / extra, args.max_module, args.max_function)
        print(f"{extra}/: {len(list((root / extra).rglob('*.py')))} modules, {len(o_big)} over {args.max_module} "
              f"lines, {len(o_long)} functions over {args.max_function} lines")  # fmt: skip
        if args.tests:
            for n, name in (*o_big, *o_long):
                print(f"  {n:5d} {name}")
            n_big, n_long = n_big + len(o_big), n_long + len(o_long)
    outside = [
        rel[p]
        for p in files
        if "/vendors/" not in rel[p] and "/integrations/" not in rel[p] and not rel[p].startswith("client/")
    ]
    naming = [name for p, name in rel.items() if name in outside and names_a_vendor(p)]
    print(f"modules outside vendors/ naming a built-in vendor in code: {len(naming)}")
    for name in naming:
        print(f"  {name}")
    if not args.no_openapi:
        try:
            ops, typed = openapi_counts(root)
            print(f"admin API operations: {ops}, with a 2xx response schema: {typed}")
        except subprocess.CalledProcessError:
            print("admin API operations: not counted (the admin app could not be built with this Python; "
                  "run .venv/bin/python scripts/structure.py after ./scripts/test set up .venv)")  # fmt: skip
    lint = Path(sys.executable).parent / "lint-imports"
    if not args.no_imports and lint.exists() and "importlinter" in (root / "pyproject.toml").read_text():
        r = subprocess.run([str(lint), "--no-cache"], cwd=root, capture_output=True, text=True)
        print("import contracts: " + " ".join(line for line in r.stdout.splitlines() if line.startswith("Contracts:")))
    where = "src/, tests/, bench/" if args.tests else "src/"
    print(f"size rules ({where}): {n_big} modules over {args.max_module} lines, "
          f"{n_long} functions over {args.max_function} lines")  # fmt: skip
    return 1 if n_big or n_long else 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
