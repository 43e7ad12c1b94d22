"""Any JSON a client sends as a tool's arguments becomes a request or a ToolInputError naming what
is wrong — never another exception (which the MCP front would turn into a protocol failure)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.vendors import build_vendors
from keybrake.vendors.tool_catalog import tools_for
from keybrake.vendors.tools import Tool, ToolInputError, build_request

TOOLS: list[Tool] = [t for v in build_vendors().values() for t in tools_for(v)]
_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)  # lone surrogates too
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12,
)


def test_every_vendor_with_tools_is_covered() -> None:
    assert {t.vendor for t in TOOLS} >= {"stripe", "twilio", "resend", "postmark", "sendgrid", "segment"}


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(TOOLS),
    st.dictionaries(_TEXT | st.sampled_from(["intent", "Sid", "emails", "idempotency_key"]), JSON, max_size=5),
)
def test_arguments_build_or_are_refused_by_name(tool: Tool, args: dict[str, Any]) -> None:
    try:
        built = build_request(tool, args, "vk_test")
    except ToolInputError as exc:
        assert str(exc)
        return
    assert built.raw_path.startswith(f"/{tool.vendor}/".encode())
    assert b"/../" not in built.raw_path and not built.raw_path.endswith(b"/..")
