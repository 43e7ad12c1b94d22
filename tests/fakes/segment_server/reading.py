"""How a Go service reads a Segment message: a reference model for the one-parse tests.

Segment's services are written in Go. Go's JSON readers (`encoding/json`, and Segment's own
drop-in `segmentio/encoding/json`) map an object member to a struct field by its exact name or,
failing that, by a case-insensitive match (`bytes.EqualFold`: Unicode simple case folding, so
the Kelvin sign U+212A matches `k` and the long s U+017F matches `s`); every member that maps to
a field sets it, so the last one wins. This module answers "what would Segment act on".
"""

from __future__ import annotations

import json
from typing import Any

_FOLD_SPECIAL = {"\u212a": "k", "\u017f": "s"}  # beyond str.lower(): simple folds to ASCII letters


def go_fold(name: str) -> str:
    """`bytes.EqualFold` as a key: two names are equal-fold when their go_fold is equal."""
    return "".join(_FOLD_SPECIAL.get(c, c) for c in name).lower()


class Members(list[tuple[str, Any]]):
    """A JSON object as a Go reader meets it: its members in order, duplicates included."""


def go_members(body: bytes | str) -> Any:
    """The JSON document with every object as ``Members`` (arrays stay lists)."""
    return json.loads(body, object_pairs_hook=Members)


def go_field(obj: Any, field: str) -> Any:
    """The value Go decodes into `field` from a members list (see ``go_members``): the last member
    whose name equals `field` or folds to it. None when absent or when `obj` is not an object."""
    if not isinstance(obj, Members):
        return None
    value = None
    for name, member in obj:
        if name == field or go_fold(name) == go_fold(field):
            value = member
    return value


def go_plain(value: Any) -> Any:
    """A members-list value back as plain JSON values (the last of duplicated names wins)."""
    if isinstance(value, Members):
        return {k: go_plain(v) for k, v in value}
    if isinstance(value, list):
        return [go_plain(v) for v in value]
    return value
