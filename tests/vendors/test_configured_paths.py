"""The JSON path subset of vendor definitions (vendors/configured/paths.py) against a reference
model: generated documents and paths, every value `read` finds equals what a plain recursive
walk of the text finds, `replace` overwrites exactly those, and `compile_path` refuses what is
not a path."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.vendors.configured.paths import any_case_key, compile_path, exact_key, folded_key, read, replace
from tests.vendors.one_parse_gen import props

pytestmark = pytest.mark.store_free

KEYS = ["to", "To", "cc", "email", "items", "a"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["x", "+1415", "a@b.io"]))
docs = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["to", "cc", "email", "items", "a"]), inner, max_size=3),
    ),
    max_leaves=12,
)
step = st.one_of(st.sampled_from(KEYS), st.sampled_from(["[*]", "[0]", "[1]"]))


@st.composite
def path_texts(draw: st.DrawFn) -> str:
    steps = draw(st.lists(step, min_size=1, max_size=4))
    text = ""
    for s in steps:
        text += s if s.startswith("[") else ("." if text else "") + s
    return text


def reference(doc: Any, text: str) -> list[Any]:
    """The reference reading: split the text with one regex, walk with plain recursion."""
    tokens = re.findall(r"\[\*\]|\[\d+\]|[^.\[\]]+", text)

    def walk(node: Any, rest: list[str]) -> list[Any]:
        if not rest:
            return [node]
        head, tail = rest[0], rest[1:]
        if head == "[*]":
            return [v for item in node for v in walk(item, tail)] if isinstance(node, list) else []
        if head.startswith("["):
            i = int(head[1:-1])
            return walk(node[i], tail) if isinstance(node, list) and i < len(node) else []
        return walk(node[head], tail) if isinstance(node, dict) and head in node else []

    return walk(doc, tokens)


@props(600)
@given(docs, path_texts())
def test_read_finds_what_the_reference_walk_finds(doc: Any, text: str) -> None:
    path = compile_path(text)
    assert read(doc, path, _plain) == reference(doc, text)


def _plain(obj: dict[str, Any], key: str) -> list[str]:
    return [key] if key in obj else []


@props(400)
@given(docs, path_texts())
def test_replace_overwrites_exactly_the_values_read(doc: Any, text: str) -> None:
    path = compile_path(text)
    before = reference(doc, text)
    out = copy.deepcopy(doc)
    n = replace(out, path, "[R]", _plain)
    after = reference(out, text)
    assert n == sum(v is not None and v != "[R]" for v in before)
    assert after == [v if v is None or v == "[R]" else "[R]" for v in before]
    # Nothing else was overwritten: the places a path reaches are never nested in one another.
    assert json.dumps(out).count('"[R]"') == n


@pytest.mark.parametrize(
    "text",
    ["", ".to", "to.", "to..cc", "to[", "to[x]", "to[-1]", "to]", "t o", "to[*]x", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q"],
)
def test_compile_refuses_what_is_not_a_path(text: str) -> None:
    with pytest.raises(ValueError):
        compile_path(text)


def test_compile_reads_the_documented_forms() -> None:
    assert compile_path("personalizations[*].to[*].email").steps == ("personalizations", -1, "to", -1, "email")
    assert compile_path("[*].To").steps == (-1, "To")
    assert compile_path("data[0].id").steps == ("data", 0, "id")


def test_key_matching_refuses_near_misses_and_reads_case_only_when_asked() -> None:
    doc = {"TO": ["+1"]}
    with pytest.raises(Denial) as exc:
        read(doc, compile_path("to"), exact_key)
    assert exc.value.code == "body_invalid" and "send 'to'" in exc.value.message
    assert read(doc, compile_path("to"), folded_key) == [["+1"]]
    with pytest.raises(Denial):
        read({"ｔｏ": "x"}, compile_path("to"), folded_key)  # a width variant: a lenient reader's, not .NET's
    assert read({"To": 1, "to": 2}, compile_path("to"), any_case_key) == [1, 2]


def render(steps: tuple[str | int, ...]) -> str:
    out = ""
    for s in steps:
        out += ("." if out else "") + s if isinstance(s, str) else ("[*]" if s == -1 else f"[{s}]")
    return out


@props(1500)
@given(st.text(alphabet="ab.[]*0_-$@ 9", max_size=14))
def test_a_text_compiles_only_to_the_path_it_spells(text: str) -> None:
    """Every accepted text is exactly the rendering of its steps: nothing is dropped or guessed
    (`to[` was accepted as `to` before)."""
    try:
        path = compile_path(text)
    except ValueError:
        return
    assert render(path.steps) == text
