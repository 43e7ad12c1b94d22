"""Checks of an admin request's body and query the stores could not keep (the admin gate runs them)."""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def has_lone_surrogate(body: bytes) -> bool:
    """True when a JSON body decodes to a string no UTF-8 store can hold (a lone surrogate).

    JSON allows `\\ud800` escapes; a proper pair is one character and is accepted. Only bodies
    with such an escape are parsed here; a body that is not JSON is left to the app (400).
    """
    if not _SURROGATE_ESCAPE.search(body):
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def has_nul(scope: dict[str, Any], body: bytes) -> bool:
    """A NUL in the decoded path, the query string (raw or %00) or a string of the JSON body."""
    query = scope.get("query_string", b"")
    if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query or b"\x00" in body:
        return True
    if b"\\u0000" not in body:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and "\x00" in node:
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
