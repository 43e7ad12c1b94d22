"""`values_bound` is an upper bound on the values a body holds (core/body_values.py): a body it
lets through never holds more than MAX_BODY_VALUES values, however it is written."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.body_values import MAX_BODY_VALUES, too_many_values, values_bound

pytestmark = pytest.mark.store_free

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=60,
)


def _values(doc: Any) -> int:
    """The values `doc` holds: itself, and every member and item within."""
    if isinstance(doc, list):
        return 1 + sum(_values(v) for v in doc)
    if isinstance(doc, dict):
        return 1 + sum(_values(v) for v in doc.values())
    return 1


@settings(max_examples=300)
@given(doc=JSON, spaced=st.booleans())
def test_the_bound_is_never_below_the_values_a_json_body_holds(doc: Any, spaced: bool) -> None:
    body = json.dumps(doc, separators=(", ", ": ") if spaced else (",", ":")).encode()
    assert values_bound(body) >= _values(doc)


@given(pairs=st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=40))
def test_the_bound_is_never_below_the_fields_a_form_holds(pairs: list[tuple[str, str]]) -> None:
    assert values_bound(urlencode(pairs).encode()) >= len(pairs)


def test_the_line() -> None:
    # b"[" + b"[]," * k + b"[]]" counts 2k + 2 openers and separators: a bound of 2k + 3
    assert values_bound(b"[" + b"[]," * 4 + b"[]]") == 11
    assert not too_many_values(b"[" + b"[]," * ((MAX_BODY_VALUES - 3) // 2) + b"[]]")
    assert too_many_values(b"[" + b"[]," * ((MAX_BODY_VALUES - 3) // 2 + 1) + b"[]]")
    assert not too_many_values(b"," * (MAX_BODY_VALUES - 2))  # shorter than the line: not counted
