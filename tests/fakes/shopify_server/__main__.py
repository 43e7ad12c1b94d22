"""`python -m tests.fakes.shopify_server [--port 12118]`: the fake Shopify Admin API on its own
(docs/sdk-shopify.md, "Set it up"), holding its one paid order, 1001; see tests/fakes/standalone.py."""

from __future__ import annotations

from tests.fakes.shopify_server.server import DEFAULT_TOKEN, FakeShopify
from tests.fakes.standalone import main

if __name__ == "__main__":
    main("fake-shopify", 12118, lambda: (FakeShopify(), f"the access token {DEFAULT_TOKEN}; it holds order 1001"))
