"""What a tool's description tells a model: whether it reads or acts, and the key's limits and
scope with their values — for every tool of every vendor with tools."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.policy import Policy
from keybrake.vendors import build_vendors
from keybrake.vendors.tool_catalog import tools_for
from keybrake.vendors.tools import Tool, blast_radius

TOOLS: list[Tool] = [t for v in build_vendors().values() for t in tools_for(v)]


def test_only_reads_say_they_read_only() -> None:
    policy = Policy.from_store({})
    for tool in TOOLS:
        text = blast_radius(tool, policy, "2030-01-01T00:00:00.000Z")
        assert ("Reads only" in text) == (tool.method == "GET"), (tool.name, text)
        assert (tool.moves or "moves no money") in text


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(TOOLS),
    st.integers(1, 10**12),
    st.lists(st.from_regex(r"[a-z]{1,10}\.(com|org)", fullmatch=True), min_size=1, max_size=8),
)
def test_caps_and_scope_values_are_stated(tool: Tool, cap: int, domains: list[str]) -> None:
    policy = Policy.from_store({"daily_usd_cap": cap, "allowed_to_domains": domains})
    text = blast_radius(tool, policy, "2030-01-01T00:00:00.000Z")
    assert "a day" in text and "2030-01-01T00:00:00.000Z" in text
    assert all(d in text for d in domains[:5])
    assert (f"and {len(domains) - 5} more" in text) == (len(domains) > 5)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(TOOLS), st.sets(st.from_regex(r"cus_[A-Za-z0-9]{4,14}", fullmatch=True), max_size=8))
def test_the_customers_a_key_may_act_for_are_named(tool: Tool, customers: set[str]) -> None:
    """Not only how many (newcomer run: the model could not know which id to pass)."""
    policy = Policy.from_store({"customer_allowlist": sorted(customers)})
    text = blast_radius(tool, policy, "2030-01-01T00:00:00.000Z")
    assert "Only these customers may be acted for (customer_allowlist: " in text
    assert all(c in text for c in sorted(customers)[:5])
    assert (f"and {len(customers) - 5} more" in text) == (len(customers) > 5)
    assert (": none" in text) == (not customers)
