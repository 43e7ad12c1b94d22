"""`METHOD /path` endpoint patterns (docs/policy.md) and their matching.

`*` alone matches one non-empty segment; `*` inside a segment globs within it; `**`, only as the
last segment, matches zero or more segments; literal segments match exactly (case-sensitive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})


class PatternError(ValueError):
    pass


@dataclass(frozen=True)
class EndpointPattern:
    text: str
    methods: frozenset[str] | None  # None = any method
    segments: tuple[str, ...]  # raw pattern segments; "**" only last
    _regexes: tuple[re.Pattern[str] | None, ...]  # None for a literal segment
    casefold: bool = False
    # Derived once (matching is on every request's path, many patterns per request): the
    # segments before a trailing "**", and whether they are all literal and case-sensitive
    # (then one tuple comparison decides).
    _fixed: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _rest: bool = field(init=False, repr=False, compare=False)
    _plain: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rest = bool(self.segments) and self.segments[-1] == "**"
        fixed = self.segments[:-1] if rest else self.segments
        object.__setattr__(self, "_rest", rest)
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_plain", not self.casefold and all(rx is None for rx in self._regexes[: len(fixed)]))

    @property
    def rest(self) -> bool:
        return self._rest

    def matches(self, method: str, path: tuple[str, ...]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        segs = self._fixed
        if self._rest:
            if len(path) < len(segs):
                return False
            if self._plain:
                return path[: len(segs)] == segs
        elif self._plain:
            return path == segs
        elif len(path) != len(segs):
            return False
        casefold = self.casefold
        for i, pat in enumerate(segs):
            seg = path[i]
            rx = self._regexes[i]
            if rx is None:
                if (seg.lower() != pat.lower()) if casefold else (seg != pat):
                    return False
            elif not rx.fullmatch(seg.lower() if casefold else seg):
                return False
        return True

    def is_literal(self) -> bool:
        """Names its endpoints outright: explicit methods, no wildcard in any segment."""
        return self.methods is not None and not any("*" in s for s in self.segments)


def parse_pattern(text: str, *, casefold: bool = False) -> EndpointPattern:
    """Parse `METHOD /path`. `casefold` patterns match case-insensitively (guarded lists)."""
    if not isinstance(text, str) or text != text.strip() or text.count(" ") != 1:
        raise PatternError("must be 'METHOD /path', e.g. 'POST /v1/payment_intents'")
    method_part, path_part = text.split(" ")
    methods: frozenset[str] | None
    if method_part == "*":
        methods = None
    else:
        names = method_part.split("|")
        bad = [m for m in names if m not in METHODS]
        if bad:
            raise PatternError(f"unknown method {bad[0]!r}; use GET, POST, PATCH, PUT, DELETE, '*' or a '|'-list")
        methods = frozenset(names)
    if not path_part.startswith("/") or "//" in path_part or (path_part.endswith("/") and path_part != "/"):
        raise PatternError("the path must start with '/' and have no empty segments")
    segments = tuple(path_part[1:].split("/")) if path_part != "/" else ()
    regexes: list[re.Pattern[str] | None] = []
    for i, seg in enumerate(segments):
        if seg in (".", "..") or "%" in seg or "?" in seg or "#" in seg:
            raise PatternError(f"segment {seg!r} is not allowed in a pattern")
        if "**" in seg:
            if seg != "**" or i != len(segments) - 1:
                raise PatternError("'**' is allowed only as the whole last segment")
            regexes.append(None)
            continue
        if "*" in seg:
            body = ".*".join(re.escape(p.lower() if casefold else p) for p in seg.split("*"))
            regexes.append(re.compile(body if seg != "*" else r".+", re.DOTALL))
        else:
            regexes.append(None)
    return EndpointPattern(text, methods, segments, tuple(regexes), casefold)


def first_match(patterns: tuple[EndpointPattern, ...], method: str, path: tuple[str, ...]) -> EndpointPattern | None:
    for p in patterns:
        if p.matches(method, path):
            return p
    return None


def sample_requests(pattern: EndpointPattern) -> list[tuple[str, tuple[str, ...]]]:
    """Concrete (method, path) requests `pattern` matches: every method it names (all of METHODS for
    '*'), each wildcard filled with "x" and a trailing '**' with nothing and with one segment. Used
    to find a pattern an earlier one already covers (`shadows`)."""
    fixed = tuple(seg.replace("*", "x") for seg in pattern.segments if seg != "**")
    paths = [fixed, (*fixed, "x")] if pattern.rest else [fixed]
    methods = sorted(pattern.methods) if pattern.methods is not None else sorted(METHODS)
    return [(m, path) for m in methods for path in paths]


def shadows(earlier: EndpointPattern, later: EndpointPattern) -> tuple[str, tuple[str, ...]] | None:
    """A request `later` matches that `earlier` matches too (so, with first-match-wins, it never
    reaches `later`), or None when `earlier` covers none of `later`'s sample requests."""
    for method, path in sample_requests(later):
        if later.matches(method, path) and earlier.matches(method, path):
            return method, path
    return None
