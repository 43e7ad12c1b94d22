"""The fake Shopify Admin server: access-token auth, GraphQL executed against `schema.SDL`, a
few REST endpoints, orders whose captured and refunded amounts the tests read back."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLFieldResolver,
    OperationDefinitionNode,
    graphql_sync,
    parse,
)

from tests.fakes.base import FakeThread, JsonFakeServer, RecordedRequest
from tests.fakes.shopify_server.schema import SCHEMA, bag, money, new_gid, user_error

DEFAULT_TOKEN = "shpat_" + "fa4e" * 8
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
_PATH = re.compile(r"^/admin/api/(?P<version>\d{4}-\d{2}|unstable)/(?P<rest>.+)$")


@dataclass
class FakeOrder:
    """An order: `authorized` is what may still be captured, `captured` what may be refunded."""

    gid: str
    currency: str
    authorized: Decimal
    captured: Decimal
    refunded: Decimal = Decimal(0)


class FakeShopify(JsonFakeServer):
    """A fake Shopify Admin API shop. ``await start()`` binds 127.0.0.1 on a free port.

    ``orders`` (legacy numeric id → FakeOrder) starts with order 1001 ($500 captured, USD);
    ``refunds`` (and ``store_credit`` issued), ``gift_cards``, ``products``, ``tokens`` and
    ``webhooks`` record what was made.
    """

    name = "fake-shopify"

    def __init__(self, *, token: str = DEFAULT_TOKEN, currency: str = "USD") -> None:
        super().__init__()
        self.token = token
        self.currency = currency
        self.orders: dict[str, FakeOrder] = {}
        self.refunds: list[dict[str, Any]] = []
        self.store_credit = Decimal(0)  # issued by refundCreate's storeCreditRefund methods
        self.gift_cards: list[dict[str, Any]] = []
        self.products: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.webhooks: list[dict[str, Any]] = []
        self.add_order("1001", captured=Decimal("500.00"))

    def add_order(self, legacy_id: str, *, captured: Decimal, authorized: Decimal = Decimal(0)) -> FakeOrder:
        order = FakeOrder(f"gid://shopify/Order/{legacy_id}", self.currency, authorized, captured)
        self.orders[legacy_id] = order
        return order

    def order(self, gid_or_id: str) -> FakeOrder | None:
        return self.orders.get(str(gid_or_id).rsplit("/", 1)[-1])

    def reply(self, status: int, doc: Any) -> web.Response:
        return web.json_response(doc, status=status, headers={"x-request-id": secrets.token_hex(8)})

    async def handle(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        if request.headers.get("X-Shopify-Access-Token") != self.token:
            return self.reply(401, {"errors": INVALID_TOKEN})
        m = _PATH.match(request.path)
        if m is None:
            return self.reply(404, {"errors": "Not Found"})
        rest, method = m["rest"], request.method
        if rest == "graphql.json" and method == "POST":
            return self.reply(200, self._graphql(rec))
        if rest == "shop.json" and method == "GET":
            return self.reply(200, {"shop": {"name": "Fake Shop", "currency": self.currency}})
        found = re.fullmatch(r"orders/(\d+)(\.json|/refunds\.json)", rest)
        order = self.orders.get(found[1]) if found else None
        if found is None or order is None:
            return self.reply(404, {"errors": "Not Found"})
        if found[2] == ".json" and method == "GET":
            return self.reply(200, {"order": self._rest_order(found[1], order)})
        if found[2] == "/refunds.json" and method == "POST":
            return self._rest_refund(found[1], order, rec.json)
        return self.reply(406, {"errors": "Not Acceptable"})

    # --- GraphQL -------------------------------------------------------------------------------

    def execute(
        self, query: str, variables: Any, operation_name: Any, field_resolver: GraphQLFieldResolver | None = None
    ) -> ExecutionResult:
        """Validate and execute a document against the fake's schema and state, as Shopify would
        (`field_resolver`: graphql-core's hook around every field, e.g. to record what ran)."""
        return graphql_sync(
            SCHEMA,
            query,
            _Root(self),
            variable_values=variables,
            operation_name=operation_name,
            field_resolver=field_resolver,
        )

    def _graphql(self, rec: RecordedRequest) -> dict[str, Any]:
        body = rec.json if isinstance(rec.json, dict) else {}
        query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
        if not isinstance(query, str):
            return {"errors": [{"message": "Parameter Missing or Invalid", "extensions": {"code": "BAD_REQUEST"}}]}
        result = self.execute(query, variables, name)
        if result.errors and result.data is None:
            return {"errors": [e.formatted for e in result.errors]}
        cost = _cost(query, name)
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        out["extensions"] = {
            "cost": {
                "requestedQueryCost": cost,
                "actualQueryCost": cost,
                "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 2000 - cost, "restoreRate": 100.0},
            }
        }
        return out

    # --- REST ----------------------------------------------------------------------------------

    def _rest_order(self, legacy_id: str, order: FakeOrder) -> dict[str, Any]:
        return {
            "id": int(legacy_id),
            "admin_graphql_api_id": order.gid,
            "currency": order.currency,
            "total_price": str(order.captured),
        }

    def _rest_refund(self, legacy_id: str, order: FakeOrder, doc: Any) -> web.Response:
        refund = doc.get("refund") if isinstance(doc, dict) else None
        txs = refund.get("transactions", []) if isinstance(refund, dict) else None
        try:
            amounts = [Decimal(str(t["amount"])) for t in txs or []]
        except (KeyError, TypeError, InvalidOperation):
            return self.reply(422, {"errors": {"transactions": ["amount is invalid"]}})
        if txs is None:
            return self.reply(400, {"errors": {"refund": "Required parameter missing or invalid"}})
        if order.refunded + sum(amounts) > order.captured:
            return self.reply(422, {"errors": {"base": ["Refund amount exceeds the amount available to refund"]}})
        order.refunded += sum(amounts)
        made = {
            "id": len(self.refunds) + 1,
            "order_id": int(legacy_id),
            "transactions": [
                {"id": i + 1, "kind": "refund", "status": "success", "amount": str(a), "currency": order.currency}
                for i, a in enumerate(amounts)
            ],
        }
        self.refunds.append({"via": "rest", "order": legacy_id, "amount": sum(amounts)})
        return self.reply(201, {"refund": made})


class _Root:
    """The root value of QueryRoot and Mutation: one method per root field (graphql-core calls
    `field(info, **arguments)`), answering Shopify's payload shapes."""

    def __init__(self, fake: FakeShopify) -> None:
        self.fake = fake

    def shop(self, info: Any) -> dict[str, Any]:
        return {"name": "Fake Shop", "currencyCode": self.fake.currency, "myshopifyDomain": "fake.myshopify.com"}

    def order(self, info: Any, id: str) -> dict[str, Any] | None:
        o = self.fake.order(id)
        if o is None:
            return None
        return {"id": o.gid, "name": "#" + o.gid.rsplit("/", 1)[-1], "totalRefundedSet": bag(o.refunded, o.currency),
                "capturedSet": bag(o.captured, o.currency)}  # fmt: skip

    def refundCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        o = self.fake.order(input["orderId"])
        if o is None:
            return {"refund": None, "order": None, "userErrors": [user_error(["orderId"], "Order does not exist")]}
        amounts = [Decimal(t["amount"]) for t in input.get("transactions") or []]
        credit = [Decimal(m["storeCreditRefund"]["amount"]["amount"]) for m in input.get("refundMethods") or []]
        amounts += credit
        if o.refunded + sum(amounts) > o.captured and not input.get("allowOverRefunding"):
            err = user_error(["transactions"], "Refund amount exceeds the amount available to refund")
            return {"refund": None, "order": None, "userErrors": [err]}
        o.refunded += sum(amounts)
        self.fake.store_credit += sum(credit, Decimal(0))
        self.fake.refunds.append({"via": "graphql", "order": o.gid, "amount": sum(amounts)})
        refund = {"id": new_gid("Refund"), "totalRefundedSet": bag(sum(amounts, Decimal(0)), o.currency)}
        return {"refund": refund, "order": self.order(info, o.gid), "userErrors": []}

    def orderCapture(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        o, amount = self.fake.order(input["id"]), Decimal(input["amount"])
        if o is None or amount > o.authorized:
            return {"transaction": None, "userErrors": [user_error(["amount"], "Amount exceeds capturable amount")]}
        o.authorized -= amount
        o.captured += amount
        tx = {"id": new_gid("OrderTransaction"), "kind": "CAPTURE", "amountSet": bag(amount, o.currency)}
        return {"transaction": tx, "userErrors": []}

    def giftCardCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        value = Decimal(str(input["initialValue"]))
        card = {"id": new_gid("GiftCard"), "initialValue": money(value, self.fake.currency)}
        card["balance"] = card["initialValue"]
        self.fake.gift_cards.append(card)
        return {"giftCard": card, "giftCardCode": secrets.token_hex(8), "userErrors": []}

    def productCreate(self, info: Any, product: dict[str, Any]) -> dict[str, Any]:
        made = {"id": new_gid("Product"), "title": product["title"]}
        self.fake.products.append(made)
        return {"product": made, "userErrors": []}

    def orderCancel(self, info: Any, orderId: str, reason: str, restock: bool, **args: Any) -> dict[str, Any]:
        """Cancels; `refund: true` or `refundMethod.originalPaymentMethodsRefund` refunds what is left."""
        o = self.fake.order(orderId)
        if o is None:
            return {
                "job": None,
                "orderCancelUserErrors": [user_error(["orderId"], "Order does not exist")],
                "userErrors": [],
            }
        method = args.get("refundMethod") or {}
        if args.get("refund") or method.get("originalPaymentMethodsRefund"):
            self.fake.refunds.append({"via": "orderCancel", "order": o.gid, "amount": o.captured - o.refunded})
            o.refunded = o.captured
        return {"job": {"id": new_gid("Job"), "done": False}, "orderCancelUserErrors": [], "userErrors": []}

    def draftOrderComplete(self, info: Any, id: str) -> dict[str, Any]:
        return {"draftOrder": {"id": id, "status": "COMPLETED"}, "userErrors": []}

    def storefrontAccessTokenCreate(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        token = "shpss_" + secrets.token_hex(16)
        self.fake.tokens.append(token)
        made = {"id": new_gid("StorefrontAccessToken"), "title": input["title"], "accessToken": token}
        return {"storefrontAccessToken": made, "userErrors": []}

    def webhookSubscriptionCreate(self, info: Any, topic: str, webhookSubscription: dict[str, Any]) -> dict[str, Any]:
        made = {"id": new_gid("WebhookSubscription"), "topic": topic}
        self.fake.webhooks.append({**made, **webhookSubscription})
        return {"webhookSubscription": made, "userErrors": []}


def _cost(query: str, operation_name: str | None) -> int:
    """Shopify's cost model, simplified: 10 points per mutation root field, 1 per object field read."""
    doc = parse(query)
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    op = next((o for o in ops if o.name is not None and o.name.value == operation_name), ops[0])
    if op.operation.value == "mutation":
        return 10 * sum(1 for s in op.selection_set.selections if isinstance(s, FieldNode))
    return 1 + sum(1 for s in op.selection_set.selections if isinstance(s, FieldNode) and s.selection_set is not None)


class FakeShopifyThread(FakeThread[FakeShopify]):
    """Runs a :class:`FakeShopify` in its own event loop on a background thread
    (``with FakeShopifyThread() as t: …``; ``hold()`` / ``release()`` keep calls in flight)."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, currency: str = "USD") -> None:
        super().__init__(FakeShopify(token=token, currency=currency))
