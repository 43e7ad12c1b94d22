"""The fenced code blocks of a Markdown page, and what the page says about running them.

A `sh` or `python` block is run by tests/docs/test_docs_run.py unless a marker comment stands on
the line before it (blank lines between are allowed):

- `<!-- not-run: REASON -->`: not run; the test counts these and prints the reasons.
- `<!-- background: HOST:PORT -->`: a server started as written, in its own shell, kept running
  until the page is done; the next block runs once HOST:PORT accepts connections.

A page whose examples need the servers another page starts says so once, anywhere in it:
`<!-- servers: README.md -->` (a path relative to the page) runs that page's background blocks first.

A comment `# → TEXT` in a block (on its own line or after code) states what the code before it
prints: `…` in TEXT stands for anything, whitespace is ignored, and the pieces must appear in that
order in the output.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

RUN_LANGS = ("sh", "python")
_FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*(not-run|background):\s*(.+?)\s*-->\s*$")
_SERVERS = re.compile(r"<!--\s*servers:\s*(\S+)\s*-->")
_EXPECT = re.compile(r"(?:^|\s)#\s*→\s*(.+)$")
# The documented placeholders, replaced by the value an earlier block printed.
PLACEHOLDERS = {
    "vault_key_…": re.compile(r"vault_key_[A-Za-z0-9_-]{8,}"),
    "vk_…": re.compile(r"\bvk_[A-Za-z0-9]{6,}"),
    "sk_test_…": re.compile(r"\bsk_test_[A-Za-z0-9_]{8,}"),
    "re_…": re.compile(r"\bre_[A-Za-z0-9]{20,}"),
    "cus_…": re.compile(r"\bcus_[A-Za-z0-9]{6,}"),
    "kbr_…": re.compile(r"\bkbr_[0-9A-Z]{26}"),
}


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, 1-based first code line, code, and its marker if any
    (`kind` is "run", "not-run" or "background"; `note` the reason or HOST:PORT)."""

    path: Path
    line: int
    lang: str
    code: str
    kind: str = "run"
    note: str = ""

    @property
    def where(self) -> str:
        """`file:line` of the block's first code line."""
        return f"{self.path.name}:{self.line}"

    def expectations(self) -> list[str]:
        """The `# → …` texts of the block, in order."""
        return [m.group(1) for line in self.code.splitlines() if (m := _EXPECT.search(line))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of `path`, runnable language or not, in page order."""
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    marker: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _MARKER.match(line.strip()):
            marker = (m.group(1), m.group(2))
        elif m := _FENCE.match(line.strip()):
            fence, lang = m.group(1), m.group(2)
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                j += 1
            kind, note = marker or ("run", "")
            code = textwrap.dedent("\n".join(lines[i + 1 : j]))  # a block inside a list item is indented
            out.append(Block(path, i + 2, lang, code, kind, note))
            marker, i = None, j
        elif line.strip():
            marker = None
        i += 1
    return out


def runnable(path: Path) -> list[Block]:
    """The `sh` and `python` blocks of `path`."""
    return [b for b in blocks(path) if b.lang in RUN_LANGS]


def substitute(code: str, values: dict[str, str]) -> str:
    """`code` with each documented placeholder replaced by its value (when one was seen)."""
    for name, value in values.items():
        code = code.replace(name, value)
    return code


def learn(output: str, values: dict[str, str]) -> None:
    """Record the placeholder values `output` shows (the last one of each kind wins)."""
    for name, pattern in PLACEHOLDERS.items():
        found = pattern.findall(output)
        if found:
            values[name] = found[-1]


def expected_pattern(text: str) -> re.Pattern[str]:
    """The regular expression a `# → TEXT` claim means: pieces split on `…`, in order, whitespace
    ignored (compare with `squash(output)`)."""
    pieces = [re.escape(squash(p)) for p in text.split("…")]
    return re.compile(".*?".join(pieces), re.DOTALL)


def squash(text: str) -> str:
    """`text` without any whitespace."""
    return re.sub(r"\s+", "", text)


def server_blocks(path: Path) -> list[Block]:
    """The background blocks of the page `path` names in `<!-- servers: PAGE -->`, if it does."""
    m = _SERVERS.search(path.read_text(encoding="utf-8"))
    if m is None:
        return []
    return [b for b in runnable((path.parent / m.group(1)).resolve()) if b.kind == "background"]
