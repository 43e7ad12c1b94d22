"""ShopifyAPI (the official Python library) through Keybrake.

ShopifyAPI builds its URL from a shop name (`https://{shop}.myshopify.com/admin/api/{version}`)
and sends the token as `X-Shopify-Access-Token`; it has no base-URL option that keeps a path
prefix. This helper points its resources and `shopify.GraphQL()` at `{proxy_url}/shopify/admin/api/{version}`
and sends the vault key as `X-Keybrake-Key` instead of a Shopify token::

    import shopify
    from keybrake_client.vendors.shopify import activate

    activate("http://127.0.0.1:8080", "vault_key_…", "2025-07")
    shopify.GraphQL().execute("{ shop { name } }")
    shopify.Refund.create({"order_id": 1001, "currency": "USD", "transactions": [...]})

Like ShopifyAPI's own `ShopifyResource.activate_session`, the site is process-wide and the
headers belong to the calling thread: call `activate` in each thread that makes calls, and
`deactivate` to forget the key. The shop is the credential's (its `base_url`), never the agent's.
Requires the `ShopifyAPI` package (`pip install ShopifyAPI`).
"""

from __future__ import annotations

import re

import shopify

_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")


class KeybrakeShopifyError(ValueError):
    """The helper was given something it cannot point ShopifyAPI at."""


def site(proxy_url: str, api_version: str) -> str:
    """The ShopifyAPI site for `api_version` through Keybrake: `{proxy_url}/shopify/admin/api/{version}`."""
    if not _VERSION.match(api_version):
        raise KeybrakeShopifyError(f"{api_version!r} is not a Shopify API version such as '2025-07' or 'unstable'")
    return f"{proxy_url.rstrip('/')}/shopify/admin/api/{api_version}"


def activate(proxy_url: str, vault_key: str, api_version: str) -> None:
    """Point ShopifyAPI's resources and `shopify.GraphQL()` at Keybrake with `vault_key`.

    Raises KeybrakeShopifyError for an API version Shopify does not name so."""
    shopify.ShopifyResource.site = site(proxy_url, api_version)
    shopify.ShopifyResource.version = api_version
    headers = shopify.ShopifyResource.headers
    headers.pop("X-Shopify-Access-Token", None)  # no Shopify secret ever goes to the proxy
    headers["X-Keybrake-Key"] = vault_key


def deactivate() -> None:
    """Forget the site and this thread's vault key (ShopifyAPI's `clear_session`)."""
    shopify.ShopifyResource.clear_session()
    shopify.ShopifyResource.headers.pop("X-Keybrake-Key", None)
