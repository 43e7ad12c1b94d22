"""Parameter names as a lenient reader would see them (docs/policy.md, one parse).

A vendor that ignores case, width or surrounding blanks could act on `TO`, ` To` or `Ｔｏ` as
if it were `To`: `fold` gives the name such a reader sees, and `check_spelling` refuses a name
that folds to an enforced one without being spelled exactly like it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

from keybrake.core.errors import Denial


def show(name: str) -> str:
    """A name as refusals quote it: its first 60 characters, repr-quoted."""
    return repr(name[:60])


_ASCII_BLANKS = "".join(chr(c) for c in (*range(0x21), 0x7F))  # controls, space


def padded(name: str) -> bool:
    """Whether a name starts or ends with whitespace or an invisible character."""
    return bool(name) and (_invisible(name[0]) or _invisible(name[-1]))


def _invisible(ch: str) -> bool:
    if ch.isascii():
        return ch <= " " or ch == "\x7f"
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def fold(name: str) -> str:
    """A name as a reader that ignores case, width and surrounding blanks would see it."""
    if name.isascii():
        return name.strip(_ASCII_BLANKS).lower()
    text = unicodedata.normalize("NFKC", name)
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end].casefold()


def check_spelling(names: Iterable[str], canonical: Iterable[str], *, vendor: str, literal: bool) -> None:
    """Refuse a name that reads like a parameter enforcement uses but is not spelled exactly.

    `to`, `TO`, ` To` and `Ｔｏ` all fold to `To`: a vendor that ignores case, width or blanks
    could act on them while Keybrake reads `To`. With `literal` (vendors without bracket syntax,
    JSON keys) the part before a bracket is compared too, and `To[]` or `To[0]` is refused: it
    is not `To` to Keybrake, and a lenient reader could take it for `To`.
    Raises Denial `body_invalid` (400).
    """
    by_fold = _folded(frozenset(canonical))
    for raw in names:
        base = re.split(r"[\[\]]", raw, maxsplit=1)[0] if literal else raw
        wanted = by_fold.get(fold(base))
        if wanted is not None and raw != wanted:
            raise Denial(
                "body_invalid",
                f"{vendor} parameter names are exact: send {wanted!r}, not {show(raw)}. Nothing was sent.",
            )


@functools.lru_cache(maxsize=256)
def _folded(canonical: frozenset[str]) -> dict[str, str]:
    return {fold(c): c for c in canonical}
