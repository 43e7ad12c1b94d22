"""The JSON path subset vendor definitions use (docs/vendors.md, vendors defined by a file).

A path is dotted keys with `[*]` (every element of an array) and `[N]` (one element):
`personalizations[*].to[*].email`, `Messages[*].To`, `data[0].id`, `[*].To` (a body that is an
array, such as a batch). Keys are the vendor's own
field names: letters, digits, `_`, `-`, `$` and `@`. Reading is pure: `read` gives every value a
path reaches (nothing for a missing key); `replace` overwrites them (redaction).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.names import fold, show

EVERY = -1  # the `[*]` step
_KEY = re.compile(r"^[A-Za-z0-9_$@-]+$")
_STEP = re.compile(r"\[(\*|[0-9]+)\]")
MAX_STEPS = 16


@dataclass(frozen=True)
class JsonPath:
    """A compiled path: `steps` are keys (str) and array steps (int index, or EVERY for `[*]`)."""

    text: str
    steps: tuple[str | int, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The object keys the path reads, in order (what one-parse spelling checks compare)."""
        return tuple(s for s in self.steps if isinstance(s, str))

    @property
    def top(self) -> str | None:
        """The first key (a form field's name), None when the path starts with an array step."""
        first = self.steps[0]
        return first if isinstance(first, str) else None


def compile_path(text: str) -> JsonPath:
    """Parse `a.b[*].c[0]`; raises ValueError saying what is wrong (an empty key, a bad index,
    a character outside the key alphabet, more than MAX_STEPS steps)."""
    if not isinstance(text, str) or not text:
        raise ValueError("a JSON path is a non-empty string such as 'to' or 'messages[*].to'")
    steps: list[str | int] = []
    for i, part in enumerate(text.split(".")):
        name, bracket, rest = part.partition("[")
        if not (i == 0 and not name and bracket) and not _KEY.match(name):
            raise ValueError(f"{text!r}: key {name!r} is empty or has characters other than letters, digits, _-$@")
        if name:
            steps.append(name)
        rest = bracket + rest
        while rest:
            m = _STEP.match(rest)
            if m is None:
                raise ValueError(f"{text!r}: {rest!r} is not [*] or [N]")
            steps.append(EVERY if m.group(1) == "*" else int(m.group(1)))
            rest = rest[m.end() :]
    if len(steps) > MAX_STEPS:
        raise ValueError(f"{text!r}: more than {MAX_STEPS} steps")
    return JsonPath(text, tuple(steps))


KeyMatch = Callable[[dict[str, Any], str], list[str]]


def exact_key(obj: dict[str, Any], key: str) -> list[str]:
    """The member named exactly `key`, refusing a near-miss spelling (`TO`, ` to`, `ｔｏ`) that a
    lenient reader could take for it (400 body_invalid): the vendor must see what Keybrake reads."""
    if key in obj:
        return [key]
    _near_miss(obj, key)
    return []


def folded_key(obj: dict[str, Any], key: str) -> list[str]:
    """The member whose name equals `key` ignoring ASCII case (a case-insensitive vendor's
    reading); a width or blank variant is refused as with `exact_key`. Two members equal but for
    case never reach here (the strict JSON parse refuses them)."""
    want = key.lower()
    found = [k for k in obj if k.lower() == want]
    if not found:
        _near_miss(obj, key)
    return found[:1]


def any_case_key(obj: dict[str, Any], key: str) -> list[str]:
    """Every member whose name equals `key` ignoring ASCII case (redacting answers: a secret is
    removed whatever case the vendor spells it in)."""
    want = key.lower()
    return [k for k in obj if k.lower() == want]


def _near_miss(obj: dict[str, Any], key: str) -> None:
    target = fold(key)
    for k in obj:
        if fold(k) == target:
            raise Denial(
                "body_invalid",
                f"Field names are exact here: send {key!r}, not {show(k)}. Nothing was sent.",
            )


def read(doc: Any, path: JsonPath, match: KeyMatch = exact_key) -> list[Any]:
    """Every value `path` reaches in `doc`, in document order; a missing key, an index past the
    end or a step into the wrong type reaches nothing (`shape_problem` tells those apart)."""
    return [v for _, v in _walk(doc, path.steps, match)]


def shape_problem(doc: Any, path: JsonPath, match: KeyMatch = exact_key) -> str | None:
    """Why `path` cannot be read in `doc` as its steps say (an array step into a non-array, a key
    step into a non-object, below the body itself), or None. A missing key is no problem (the
    field is absent), nor is a body of the other kind at the root: a definition may list a path
    for each body shape an endpoint takes (`To` for one message, `[*].To` for a batch)."""
    node_sets: list[Any] = [doc]
    if doc is None or isinstance(path.steps[0], str) != isinstance(doc, dict):
        return None
    for i, step in enumerate(path.steps):
        nxt: list[Any] = []
        for node in node_sets:
            if isinstance(step, str):
                if not isinstance(node, dict):
                    return f"{_prefix(path, i)} is not an object"
                nxt.extend(node[k] for k in match(node, step))
            else:
                if not isinstance(node, list):
                    return f"{_prefix(path, i)} is not an array"
                nxt.extend(node if step == EVERY else node[step : step + 1])
        node_sets = [n for n in nxt if n is not None]
    return None


def _prefix(path: JsonPath, upto: int) -> str:
    out = ""
    for step in path.steps[:upto]:
        out += (("." if out else "") + step) if isinstance(step, str) else ("[*]" if step == EVERY else f"[{step}]")
    return repr(out or "the body")


def _walk(node: Any, steps: tuple[str | int, ...], match: KeyMatch) -> Iterator[tuple[tuple[Any, Any], Any]]:
    """(container, key-or-index) and value of every node `steps` reach."""
    if not steps:
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, str):
        if not isinstance(node, dict):
            return
        places: list[tuple[Any, Any]] = [(node, k) for k in match(node, step)]
    else:
        if not isinstance(node, list):
            return
        indices = range(len(node)) if step == EVERY else ([step] if step < len(node) else [])
        places = [(node, i) for i in indices]
    for place in places:
        value = place[0][place[1]]
        if rest:
            yield from _walk(value, rest, match)
        else:
            yield place, value


def replace(doc: Any, path: JsonPath, value: Any, match: KeyMatch = any_case_key) -> int:
    """Overwrite every non-null value `path` reaches with `value`; the number overwritten."""
    places = [place for place, v in _walk(doc, path.steps, match) if v is not None and v != value]
    for container, k in places:
        container[k] = value
    return len(places)
