"""Re-export of `keybrake_client.vendors.shopify` (the `keybrake-client` distribution, extra `shopify`).

Kept so `from keybrake.integrations.shopify import …` keeps working; new code imports
`keybrake_client.vendors.shopify` (or uses `Keybrake.run(...).shopify()`). Install: `pip install './client[shopify]'`.
"""

from __future__ import annotations

try:
    from keybrake_client.vendors.shopify import KeybrakeShopifyError, activate, deactivate, site
except ModuleNotFoundError as exc:  # the client, or the vendor's SDK, is not installed
    raise ModuleNotFoundError(
        f"keybrake.integrations.shopify needs the keybrake-client package with its shopify extra "
        f"(pip install './client[shopify]' from the Keybrake repository): {exc}",
        name=exc.name,
    ) from exc

__all__ = ["KeybrakeShopifyError", "activate", "deactivate", "site"]
