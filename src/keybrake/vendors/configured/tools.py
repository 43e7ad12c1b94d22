"""A configured vendor's MCP tools, from its definition's endpoints (docs/vendors.md)."""

from __future__ import annotations

from keybrake.vendors.configured import schema as s
from keybrake.vendors.tools import Tool


def definition_tools(definition: s.Definition) -> tuple[Tool, ...]:
    """The tools a definition declares (none yet)."""
    return ()
