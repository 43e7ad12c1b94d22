"""Request-path spellings of a configured vendor (docs/vendors.md, path spellings): a path that a
vendor's router may take for a listed endpoint is either classified as that endpoint or refused
(400 path_invalid), never "unlisted" (which would skip its price, scope and guard).

Two rules, both pure: a segment holds only the definition's path alphabet (letters, digits,
`-._~@+`, the characters of its listed `match` segments and `[request] path_characters`), so `;`
parameters, blanks and other decoded percent-encodings are refused; and a near-miss of a priced,
guarded or scoped endpoint (another letter case, or a listed segment followed by `.ext`, `;…` or a
blank, as Rails/Spring/Twilio-style routers accept) that is not that endpoint is refused.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from fnmatch import fnmatchcase

from keybrake.core.errors import Denial
from keybrake.core.paths import join
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.vendors.configured import schema as s

BASE_ALPHABET = frozenset(string.ascii_letters + string.digits + "-._~@+")
_SUFFIX_STARTS = ".;, \t"


@dataclass(frozen=True)
class PathRules:
    """`alphabet`: the characters a decoded segment may hold; `sensitive`: the patterns of the
    priced, guarded and scoped endpoints, whose near-misses are refused."""

    alphabet: frozenset[str]
    sensitive: tuple[EndpointPattern, ...]
    guarded: tuple[EndpointPattern, ...] = ()  # case-insensitive: the guarded check refuses these spellings


def path_rules(d: s.Definition) -> PathRules:
    """The path rules of definition `d`."""
    chars = set(BASE_ALPHABET) | set(d.request.path_characters)
    for e in d.endpoints:
        for seg in e.match.segments:
            chars |= set(seg) - {"*"}
    sensitive = [e.match for e in d.endpoints if e.pricing != "free" or e.guarded]
    for group in (*(sc.endpoints for sc in d.scopes), *(f.endpoints for f in d.forbids)):
        sensitive += list(group or ())
    guarded = tuple(parse_pattern(e.match.text, casefold=True) for e in d.endpoints if e.guarded)
    return PathRules(frozenset(chars), tuple(dict.fromkeys(sensitive)), guarded)


def check_path(rules: PathRules, title: str, method: str, path: tuple[str, ...]) -> None:
    """Refuse (400 path_invalid) a segment with a character outside `rules.alphabet`, or a
    near-miss of a sensitive pattern that the pattern itself does not match."""
    for seg in path:
        odd = sorted(set(seg) - rules.alphabet)
        if odd:
            raise Denial(
                "path_invalid",
                f"Request path refused: segment {seg[:40]!r} holds {odd[0]!r}, which no {title} endpoint Keybrake "
                "knows spells; a router may read it as another endpoint. Nothing was sent. Do not retry unchanged.",
            )
    for pattern in rules.sensitive:
        if not near_matches(pattern, method, path) or pattern.matches(method, path):
            continue
        if not any(g.matches(method, path) for g in rules.guarded):  # else the guarded check refuses it
            raise Denial(
                "path_invalid",
                f"Request path refused: {method} {join(path)[:200]} is a variant spelling of {pattern.text}, an "
                "endpoint Keybrake prices, scopes or guards by its exact spelling; send that spelling. Nothing was "
                "sent. Do not retry unchanged.",
            )


def near_matches(pattern: EndpointPattern, method: str, path: tuple[str, ...]) -> bool:
    """Whether `path` could be `pattern` to a lenient router: each literal segment equal in any
    letter case, or followed by a suffix starting with `.`, `;`, `,` or a blank."""
    if pattern.methods is not None and method not in pattern.methods:
        return False
    segs = pattern.segments[:-1] if pattern.rest else pattern.segments
    if len(path) < len(segs) or (not pattern.rest and len(path) != len(segs)):
        return False
    return all(_near_segment(p, seg) for p, seg in zip(segs, path, strict=False))


def _near_segment(pattern: str, seg: str) -> bool:
    want, got = pattern.lower(), seg.lower()
    stems = [got] + [got[:i] for i, ch in enumerate(got) if ch in _SUFFIX_STARTS and i]
    if pattern == "*":
        return True
    if "*" in pattern:
        return any(fnmatchcase(stem, want) for stem in stems)
    return want in stems
