"""The part of Shopify's Admin GraphQL schema the fake serves, as SDL, with its resolvers.

Type, field and argument names and the payload shapes (`…Payload { <object>, userErrors }`,
`MoneyV2 { amount, currencyCode }`, `Money`/`Decimal` as decimal strings) follow Shopify's Admin
GraphQL reference (shopify.dev/docs/api/admin-graphql); only the fields the tests use are here.
The schema is executed by graphql-core, so a document Shopify would refuse as invalid (an unknown
field, a wrong argument type) is refused here too, with `{"errors": [...]}` and no `data`.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from graphql import GraphQLSchema, build_schema

SDL = """
scalar Money
scalar Decimal
scalar URL

enum CurrencyCode { USD EUR GBP CAD JPY }
enum OrderTransactionKind { SALE CAPTURE AUTHORIZATION VOID REFUND CHANGE EMV_AUTHORIZATION SUGGESTED_REFUND }
enum OrderCancelReason { CUSTOMER DECLINED FRAUD INVENTORY STAFF OTHER }
enum WebhookSubscriptionTopic { ORDERS_CREATE ORDERS_PAID REFUNDS_CREATE }

type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
type MoneyBag { shopMoney: MoneyV2! presentmentMoney: MoneyV2! }
type UserError { field: [String!] message: String! }
type Shop { name: String! currencyCode: CurrencyCode! myshopifyDomain: String! }
type Order { id: ID! name: String! totalRefundedSet: MoneyBag! capturedSet: MoneyBag! }
type Refund { id: ID! totalRefundedSet: MoneyBag! }
type OrderTransaction { id: ID! kind: OrderTransactionKind! amountSet: MoneyBag! }
type GiftCard { id: ID! initialValue: MoneyV2! balance: MoneyV2! }
type Product { id: ID! title: String! }
type DraftOrder { id: ID! status: String! }
type StorefrontAccessToken { id: ID! title: String! accessToken: String! }
type WebhookSubscription { id: ID! topic: WebhookSubscriptionTopic! }

type RefundCreatePayload { refund: Refund order: Order userErrors: [UserError!]! }
type OrderCapturePayload { transaction: OrderTransaction userErrors: [UserError!]! }
type GiftCardCreatePayload { giftCard: GiftCard giftCardCode: String userErrors: [UserError!]! }
type ProductCreatePayload { product: Product userErrors: [UserError!]! }
type DraftOrderCompletePayload { draftOrder: DraftOrder userErrors: [UserError!]! }
type StorefrontAccessTokenCreatePayload {
  storefrontAccessToken: StorefrontAccessToken
  userErrors: [UserError!]!
}
type Job { id: ID! done: Boolean! }
type OrderCancelUserError { field: [String!] message: String! }
type OrderCancelPayload { job: Job orderCancelUserErrors: [OrderCancelUserError!]! userErrors: [UserError!]! }
type WebhookSubscriptionCreatePayload { webhookSubscription: WebhookSubscription userErrors: [UserError!]! }

input OrderTransactionInput {
  amount: Money!
  gateway: String!
  kind: OrderTransactionKind!
  orderId: ID!
  parentId: ID
}
input RefundInput {
  orderId: ID!
  currency: CurrencyCode
  note: String
  notify: Boolean
  transactions: [OrderTransactionInput!]
  refundMethods: [RefundMethodInput!]
  allowOverRefunding: Boolean
}
input MoneyInput { amount: Decimal! currencyCode: CurrencyCode! }
input StoreCreditRefundInput { amount: MoneyInput! expiresAt: String }
input RefundMethodInput { storeCreditRefund: StoreCreditRefundInput }
input OrderCancelRefundMethodInput { originalPaymentMethodsRefund: Boolean storeCreditRefund: StoreCreditRefundInput }
input OrderCaptureInput { id: ID! parentTransactionId: ID! amount: Money! currency: CurrencyCode finalCapture: Boolean }
input GiftCardCreateInput { initialValue: Decimal! code: String note: String }
input ProductCreateInput { title: String! }
input StorefrontAccessTokenInput { title: String! }
input WebhookSubscriptionInput { callbackUrl: URL format: String }

type QueryRoot { shop: Shop! order(id: ID!): Order }

type Mutation {
  refundCreate(input: RefundInput!): RefundCreatePayload
  orderCapture(input: OrderCaptureInput!): OrderCapturePayload
  giftCardCreate(input: GiftCardCreateInput!): GiftCardCreatePayload
  productCreate(product: ProductCreateInput!): ProductCreatePayload
  draftOrderComplete(id: ID!): DraftOrderCompletePayload
  orderCancel(
    orderId: ID!
    reason: OrderCancelReason!
    restock: Boolean!
    refund: Boolean
    refundMethod: OrderCancelRefundMethodInput
    notifyCustomer: Boolean
    staffNote: String
  ): OrderCancelPayload
  storefrontAccessTokenCreate(input: StorefrontAccessTokenInput!): StorefrontAccessTokenCreatePayload
  webhookSubscriptionCreate(
    topic: WebhookSubscriptionTopic!
    webhookSubscription: WebhookSubscriptionInput!
  ): WebhookSubscriptionCreatePayload
}

schema { query: QueryRoot mutation: Mutation }
"""

SCHEMA: GraphQLSchema = build_schema(SDL)
_ids = itertools.count(1)


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    """A `MoneyV2`: the amount as Shopify serialises `Decimal`, a string."""
    return {"amount": str(amount), "currencyCode": currency}


def bag(amount: Decimal, currency: str) -> dict[str, Any]:
    """A `MoneyBag` in one currency (shop and presentment alike)."""
    return {"shopMoney": money(amount, currency), "presentmentMoney": money(amount, currency)}


def new_gid(kind: str) -> str:
    """A fresh global id, `gid://shopify/{kind}/{n}`."""
    return f"gid://shopify/{kind}/{next(_ids)}"


def user_error(field: list[str], message: str) -> dict[str, Any]:
    return {"field": field, "message": message}
