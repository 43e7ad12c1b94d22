"""A small in-memory fake of one shop's Shopify Admin API on loopback, for tests.

Shapes follow Shopify's Admin API reference (shopify.dev/docs/api/admin-graphql and
shopify.dev/docs/api/admin-rest); no machine-readable schema of the Admin API is published in a
form this repository can keep, so the GraphQL schema the fake executes is the subset in
`schema.SDL`, written from that reference.

Covered:

- Auth: ``X-Shopify-Access-Token``; a wrong or missing token is 401
  ``{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}``.
- ``POST /admin/api/{version}/graphql.json`` (JSON ``{"query", "variables", "operationName"}``),
  executed by graphql-core against `schema.SDL`: 200 ``{"data": …, "extensions": {"cost":
  {"requestedQueryCost", "actualQueryCost", "throttleStatus"}}}``; a document that does not
  validate is 200 ``{"errors": [{"message", "locations", …}]}`` without ``data``. Mutations
  answer ``…Payload`` objects with ``userErrors`` (a refund over what was captured, a capture
  over what was authorized, an unknown order: the object is null and ``userErrors`` says why).
- REST: ``GET shop.json``, ``GET orders/{id}.json``, ``POST orders/{id}/refunds.json``
  (201 ``{"refund": {"transactions": [...]}}``; 422 ``{"errors": {"base": [...]}}`` over the
  refundable amount). Other paths are 404 ``{"errors": "Not Found"}``.

Our choices where Shopify documents nothing: the query cost is simplified (10 points per
mutation root field, 1 per object read); ids are sequential.

Usage::

    with FakeShopifyThread() as t:
        ...t.base_url, t.fake.orders["1001"].refunded...
"""

from tests.fakes.shopify_server.server import DEFAULT_TOKEN, FakeOrder, FakeShopify, FakeShopifyThread

__all__ = ["DEFAULT_TOKEN", "FakeOrder", "FakeShopify", "FakeShopifyThread"]
