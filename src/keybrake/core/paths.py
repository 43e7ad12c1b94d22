"""Request-target normalisation: one decoded path, or a refusal. Never a guess.

The proxy matches policy against the decoded path and forwards the original bytes, so every
form in which the two could disagree for the vendor (dot segments, encoded slashes, double
encoding, empty segments, absolute-form targets) is refused rather than normalised.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from keybrake.core.errors import Denial

_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Characters that must never appear decoded in a path segment.
_FORBIDDEN_DECODED = re.compile(r"[\x00-\x1f\x7f\\/?#%]")
_ALLOWED_RAW = re.compile(rb"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")


def _invalid(why: str) -> Denial:
    return Denial("path_invalid", f"Request path refused: {why}. Send a plain path such as /v1/charges.")


def normalise_path(raw_path: bytes) -> tuple[str, ...]:
    """Decode a raw request path into its segments, refusing every ambiguous form."""
    if not raw_path.startswith(b"/"):
        raise _invalid("only origin-form targets starting with '/' are accepted")
    if raw_path.startswith(b"//"):
        raise _invalid("empty path segments ('//') are not allowed")
    if not _ALLOWED_RAW.match(raw_path):
        raise _invalid("the path contains characters that must be percent-encoded or are not allowed")
    if _BAD_PCT.search(raw_path):
        raise _invalid("malformed percent-encoding")
    raw_segments = raw_path[1:].split(b"/")
    segments: list[str] = []
    for raw in raw_segments:
        if raw == b"":
            raise _invalid("empty path segments ('//' or a trailing '/') are not allowed")
        decoded_bytes = unquote_to_bytes(raw)
        try:
            decoded = decoded_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("the path is not valid UTF-8") from None
        if _FORBIDDEN_DECODED.search(decoded):
            # Covers %2F, %5C, %25 (double encoding), control characters and NUL.
            raise _invalid("encoded '/', '\\', '%', '?', '#' or control characters are not allowed")
        if decoded in (".", ".."):
            raise _invalid("dot segments ('.' or '..') are not allowed")
        segments.append(decoded)
    return tuple(segments)


def join(segments: tuple[str, ...]) -> str:
    return "/" + "/".join(segments)
