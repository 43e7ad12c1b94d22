"""What Shopify Admin calls move, in US dollars: the amounts of the priced GraphQL mutations and
REST writes (docs/sdk-shopify.md, "What a call costs"; the classes are `shopify_classes`).

- `refundCreate`: `input.transactions[].amount` in `input.currency`, plus
  `input.refundMethods[].storeCreditRefund.amount {amount, currencyCode}` (store credit);
- `orderCapture`: `input.amount` in `input.currency`;
- `giftCardCreate`: `input.initialValue`, in the shop's currency;
- `giftCardCredit`: `creditInput.creditAmount {amount, currencyCode}`.

Every argument and input-object key of a priced mutation must be known to its pricer (`KNOWN`):
an unknown one makes the call unpriceable (a pricer returns None), never priced lower.

Amounts are Shopify's `Money`/`Decimal` scalars: decimal strings ("10.50"), whole JSON numbers, or
GraphQL number literals (read exactly); a JSON fraction (10.5) is refused, since a float cannot
be read exactly. An amount with no currency is in the shop's currency, which Keybrake knows only
from the key's `shopify_shop_currency`; without it such a call is unpriceable. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.money import MICRO
from keybrake.vendors import shopify_classes as classes

MAX_AMOUNT = Decimal(10) ** 12  # in the major unit: larger amounts are refused, not priced
_DECIMAL = re.compile(r"^[0-9]{1,13}(\.[0-9]{1,12})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Amount:
    """One amount a request moves: `value` in the major unit of `currency` (upper-case ISO 4217;
    None: the shop's currency, unknown to the request)."""

    value: Decimal
    currency: str | None
    where: str  # the argument path, for messages


def mutation_class(name: str) -> str:
    """ "guarded", "priced", "unpriceable" or "free" for a mutation field name (`shopify_classes`)."""
    return classes.mutation_class(name, frozenset(PRICED_MUTATIONS))


def mutation_amounts(name: str, arguments: Mapping[str, Any]) -> list[Amount] | None:
    """The amounts a priced mutation field moves, read from its arguments; None (unpriceable) when
    an argument or input key is not in `KNOWN`. Raises Denial `body_invalid` when an amount or
    currency is missing or malformed."""
    return PRICED_MUTATIONS[name](arguments)


# The argument and input-object keys each pricer knows (Shopify Admin GraphQL reference: RefundInput,
# OrderTransactionInput, RefundMethodInput, StoreCreditRefundInput, OrderCaptureInput,
# GiftCardCreateInput, GiftCardCreditInput; REST Refund and GiftCard). Keys that say what is
# refunded (line items, shipping, duties) move no money themselves: the transactions and
# refund methods do.
KNOWN = {
    "refundCreate": frozenset({"input"}),
    "RefundInput": frozenset(
        {
            "orderId",
            "note",
            "notify",
            "currency",
            "shipping",
            "refundLineItems",
            "refundDuties",
            "transactions",
            "refundMethods",
            "discrepancyReason",
            "allowOverRefunding",
        }
    ),
    "OrderTransactionInput": frozenset({"amount", "gateway", "kind", "orderId", "parentId"}),
    "RefundMethodInput": frozenset({"storeCreditRefund"}),
    "StoreCreditRefundInput": frozenset({"amount", "expiresAt"}),
    "orderCapture": frozenset({"input"}),
    "OrderCaptureInput": frozenset({"id", "parentTransactionId", "amount", "currency", "finalCapture"}),
    "giftCardCreate": frozenset({"input"}),
    "GiftCardCreateInput": frozenset(
        {"initialValue", "code", "customerId", "expiresOn", "note", "recipientAttributes", "templateSuffix"}
    ),
    "giftCardCredit": frozenset({"id", "creditInput"}),
    "GiftCardCreditInput": frozenset({"creditAmount", "creditedAt", "note"}),
    "refund": frozenset(
        {
            "order_id",
            "currency",
            "notify",
            "note",
            "discrepancy_reason",
            "shipping",
            "refund_line_items",
            "transactions",
        }
    ),
    "refund.transactions[]": frozenset({"parent_id", "amount", "kind", "gateway"}),
    "transaction": frozenset({"kind", "amount", "currency", "parent_id", "gateway", "test"}),
    "gift_card": frozenset({"initial_value", "code", "note", "template_suffix", "customer_id", "expires_on"}),
}


def _known(value: Mapping[str, Any], shape: str) -> bool:
    return all(k in KNOWN[shape] for k in value)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]  # GraphQL input coercion: one value given for a list is a list of one
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list.")
    return value


def _refund_create(args: Mapping[str, Any]) -> list[Amount] | None:
    inp = _object(args.get("input"), "refundCreate(input)")
    if not (_known(args, "refundCreate") and _known(inp, "RefundInput")):
        return None
    currency = _currency(inp.get("currency"), "refundCreate(input.currency)")
    out = []
    for i, t in enumerate(_list(inp.get("transactions"), "refundCreate(input.transactions)")):
        where = f"refundCreate(input.transactions[{i}].amount)"
        t = _object(t, "refundCreate(input.transactions[])")
        if not _known(t, "OrderTransactionInput"):
            return None
        out.append(Amount(_amount(t.get("amount"), where), currency, where))
    for i, m in enumerate(_list(inp.get("refundMethods"), "refundCreate(input.refundMethods)")):
        where = f"refundCreate(input.refundMethods[{i}].storeCreditRefund.amount)"
        m = _object(m, "refundCreate(input.refundMethods[])")
        credit = _object(m.get("storeCreditRefund"), f"refundCreate(input.refundMethods[{i}].storeCreditRefund)")
        if not (_known(m, "RefundMethodInput") and _known(credit, "StoreCreditRefundInput")):
            return None
        out.append(_money(credit.get("amount"), where))
    return out


def _money(value: Any, where: str) -> Amount:
    """A `MoneyInput {amount, currencyCode}` (both required)."""
    money = _object(value, where)
    if set(money) - {"amount", "currencyCode"}:
        raise _invalid(f"{where} takes amount and currencyCode only.")
    currency = _currency(money.get("currencyCode"), f"{where}.currencyCode")
    if currency is None:
        raise _invalid(f"{where}.currencyCode is required.")
    return Amount(_amount(money.get("amount"), f"{where}.amount"), currency, f"{where}.amount")


def _order_capture(args: Mapping[str, Any]) -> list[Amount] | None:
    inp = _object(args.get("input"), "orderCapture(input)")
    if not (_known(args, "orderCapture") and _known(inp, "OrderCaptureInput")):
        return None
    where = "orderCapture(input.amount)"
    currency = _currency(inp.get("currency"), "orderCapture(input.currency)")
    return [Amount(_amount(inp.get("amount"), where), currency, where)]


def _gift_card_create(args: Mapping[str, Any]) -> list[Amount] | None:
    inp = _object(args.get("input"), "giftCardCreate(input)")
    if not (_known(args, "giftCardCreate") and _known(inp, "GiftCardCreateInput")):
        return None
    where = "giftCardCreate(input.initialValue)"
    return [Amount(_amount(inp.get("initialValue"), where), None, where)]


def _gift_card_credit(args: Mapping[str, Any]) -> list[Amount] | None:
    inp = _object(args.get("creditInput"), "giftCardCredit(creditInput)")
    if not (_known(args, "giftCardCredit") and _known(inp, "GiftCardCreditInput")):
        return None
    return [_money(inp.get("creditAmount"), "giftCardCredit(creditInput.creditAmount)")]


PRICED_MUTATIONS = {
    "refundCreate": _refund_create,
    "orderCapture": _order_capture,
    "giftCardCreate": _gift_card_create,
    "giftCardCredit": _gift_card_credit,
}


def rest_refund_amounts(doc: Any) -> list[Amount] | None:
    """`POST …/orders/{id}/refunds.json`: `refund.transactions[].amount` in `refund.currency`;
    None (unpriceable) for a key not in `KNOWN`."""
    if not isinstance(doc, dict) or set(doc) - {"refund"}:
        return None
    refund = _object(doc.get("refund"), "refund")
    if not _known(refund, "refund"):
        return None
    currency = _currency(refund.get("currency"), "refund.currency")
    transactions = refund.get("transactions")
    if transactions is not None and not isinstance(transactions, list):
        raise _invalid("refund.transactions must be a list of transactions.")
    out = []
    for i, t in enumerate(transactions or ()):
        where = f"refund.transactions[{i}].amount"
        t = _object(t, "refund.transactions[]")
        if not _known(t, "refund.transactions[]"):
            return None
        out.append(Amount(_amount(t.get("amount"), where), currency, where))
    return out


def rest_transaction_amounts(doc: Any) -> list[Amount] | None:
    """`POST …/orders/{id}/transactions.json`: a `capture` or `refund` transaction's `amount`, in
    its `currency` (the shop's without one), like GraphQL's `orderCapture`; None (unpriceable) for
    any other kind (a `sale`, a `void`), a transaction without an amount (a capture of the whole
    authorization) or a key not in `KNOWN`."""
    if not isinstance(doc, dict) or set(doc) - {"transaction"}:
        return None
    tx = _object(doc.get("transaction"), "transaction")
    if not _known(tx, "transaction") or tx.get("kind") not in ("capture", "refund") or tx.get("amount") is None:
        return None
    currency = _currency(tx.get("currency"), "transaction.currency")
    return [Amount(_amount(tx.get("amount"), "transaction.amount"), currency, "transaction.amount")]


def rest_gift_card_amounts(doc: Any) -> list[Amount] | None:
    """`POST …/gift_cards.json`: `gift_card.initial_value`, in the shop's currency; None for a key
    not in `KNOWN`."""
    if not isinstance(doc, dict) or set(doc) - {"gift_card"}:
        return None
    card = _object(doc.get("gift_card"), "gift_card")
    if not _known(card, "gift_card"):
        return None
    return [Amount(_amount(card.get("initial_value"), "gift_card.initial_value"), None, "gift_card.initial_value")]


def to_micro_usd(amounts: list[Amount], shop_currency: str | None, rates: Mapping[str, Decimal]) -> int | None:
    """The sum in µUSD, rounded up; None when an amount's currency is the shop's and the key does not
    name it (unpriceable). Raises Denial `currency_not_supported` for a currency without a USD rate."""
    total = Decimal(0)
    for a in amounts:
        currency = a.currency or shop_currency
        if currency is None:
            return None
        rate = rates.get(currency.lower())
        if rate is None:
            raise Denial(
                "currency_not_supported",
                f"Currency {currency!r} ({a.where}) has no USD rate configured, so this call cannot be priced "
                "against the key's caps. Ask the operator to add it to KEYBRAKE_FX_RATES_FILE. Do not retry.",
            )
        total += a.value * Decimal(rate) * MICRO
    return int(total.to_integral_value(rounding=ROUND_CEILING))


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be an object.")
    return value


def _amount(value: Any, where: str) -> Decimal:
    """A non-negative amount in the major unit, read exactly (see the module)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise _invalid(f'{where} must be a decimal string such as "10.50" (got {type(value).__name__}).')
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, str) and _DECIMAL.match(value):
        try:
            d = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            raise _invalid(f"{where} is not a decimal amount.") from None
    else:
        raise _invalid(f'{where} must be a decimal string such as "10.50".')
    if not d.is_finite() or d < 0 or d > MAX_AMOUNT:
        raise _invalid(f"{where} must be an amount from 0 to {MAX_AMOUNT}.")
    return d


def _currency(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise _invalid(f"{where} must be an ISO 4217 currency code such as USD.")
    return value


def _invalid(message: str) -> Denial:
    return Denial("body_invalid", f"{message} Nothing was sent. Do not retry unchanged.")
