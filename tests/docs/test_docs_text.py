"""The docs' text: every relative link and `#anchor` in README.md, docs/*.md and bench/README.md
resolves (GitHub's heading-anchor rules), and no user-facing text (those pages, and the string
literals of src/ — CLI help, error messages, OpenAPI descriptions) cites internal documents or
issue numbers."""

from __future__ import annotations

import ast
import re
import unicodedata
from pathlib import Path

from tests.docs.docrun import ADMIN_LINE

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")])

_INTERNAL = re.compile(
    r"CONTRACT|DESIGN\.md|§\s*\d|\b[Ii]ssues?\s+#?\d+|\(#\d+\)|(?<![\w/&#;`.=-])#\d+\b(?![\w;])",
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _unfenced(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of the lines of `path` outside fenced code blocks, the fences dropped."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append((n, line))
    return out


def _prose(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks, inline code removed."""
    return [(n, re.sub(r"`[^`]*`", "", line)) for n, line in _unfenced(path)]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (links and emphasis reduced to their words),
    lower-cased, punctuation other than `-` and `_` dropped, spaces made `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_" or cat[0] in "LN" or cat == "Mn":
            kept.append(ch)
        elif ch == " ":
            kept.append("-")
    return "".join(kept)


def anchors(path: Path) -> set[str]:
    """Every anchor of a page: its headings (repeats get -1, -2, …) and explicit `<a id|name>`."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in _unfenced(path):
        found.update(_HTML_ANCHOR.findall(line))
        if m := _HEADING.match(line):
            base = github_anchor(m.group(2).strip("*_ "))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path, base: Path = REPO) -> list[str]:
    """`file:line: target (why)` for each relative link or anchor of `path` that does not resolve."""
    bad = []
    for n, line in _prose(path):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(base)}:{n}: {target}"
            if not dest.exists():
                bad.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{where} (no heading has this anchor)")
    return bad


def test_github_anchor_rules() -> None:
    assert github_anchor("1. Start Keybrake") == "1-start-keybrake"
    assert github_anchor("`GET /v1/audit/{id}`") == "get-v1auditid"
    assert github_anchor("Running on both cores: two processes, one SQLite data dir") == (
        "running-on-both-cores-two-processes-one-sqlite-data-dir"
    )
    assert github_anchor("Vendors defined by a [file](x.md)") == "vendors-defined-by-a-file"


def test_every_relative_link_and_anchor_resolves() -> None:
    bad = [b for page in PAGES for b in broken_links(page)]
    assert not bad, "\n".join(bad)


def test_a_broken_anchor_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same\n")
    page.write_text("# Top\n\n[ok](other.md#same-1) [bad](other.md#nope) [gone](missing.md) [self](#top)\n")
    assert anchors(tmp_path / "other.md") == {"other", "same", "same-1"}
    assert broken_links(page, tmp_path) == [
        "page.md:3: other.md#nope (no heading has this anchor)",
        "page.md:3: missing.md (no such file)",
    ]
    fenced = tmp_path / "fenced.md"
    fenced.write_text("# Real\n\n```sh\n# a shell comment\n[x](gone.md)\n```\n")
    assert anchors(fenced) == {"real"} and broken_links(fenced, tmp_path) == []


def _source_strings() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted((REPO / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((str(path.relative_to(REPO)), node.lineno, node.value))
    return out


def test_no_user_facing_text_cites_internal_documents_or_issue_numbers() -> None:
    hits = [
        f"{page.relative_to(REPO)}:{n}: {m.group(0)!r} in {line.strip()[:100]!r}"
        for page in PAGES
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if (m := _INTERNAL.search(line))
    ]
    hits += [
        f"{path}:{n}: {m.group(0)!r} in a string" for path, n, s in _source_strings() if (m := _INTERNAL.search(s))
    ]
    assert not hits, "\n".join(hits)


def test_the_internal_reference_check_can_fail() -> None:
    for text in ("see CONTRACT §4.1", "as DESIGN.md says", "fixed in issue 14", "(issue 3)", "(#12)", "see #12"):
        assert _INTERNAL.search(text), text
    for text in ("color #fff", "[x](#anchor-12)", "a 4xx answer", "HTTP 429"):
        assert not _INTERNAL.search(text), text


ADMIN_DEFINITION = ADMIN_LINE  # the line tests/docs/docrun.py runs for a page that uses $ADMIN unset


def test_admin_is_defined_one_way_everywhere() -> None:
    """Every page that sets `ADMIN` sets it exactly as the README does, so a command copied from
    any page works in the shell the README set up."""
    assert ADMIN_DEFINITION in (REPO / "README.md").read_text(encoding="utf-8")
    other = [
        f"{page.relative_to(REPO)}:{n}: {line.strip()}"
        for page in PAGES
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"(?<![\w$])ADMIN=", line) and ADMIN_DEFINITION not in line
    ]
    assert not other, "\n".join(other)
