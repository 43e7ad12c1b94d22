"""What Shopify Admin calls move, in US dollars: GraphQL mutations by field name, REST by endpoint.

Each mutation field is **guarded** (mints tokens or redirects events), **priced** (its amount is
in its arguments), **unpriceable** (it moves money by an amount its request does not state) or
**free** (docs/sdk-shopify.md, pricing):

- priced: `refundCreate` (`input.transactions[].amount`, in `input.currency`), `orderCapture`
  (`input.amount` in `input.currency`), `giftCardCreate` (`input.initialValue`, in the shop's
  currency), `giftCardCredit` (`creditInput.creditAmount {amount, currencyCode}`);
- unpriceable: every other field whose name holds one of `MONEY_WORDS` (refunds, captures,
  payments, billing, gift cards, store credit, discounts and price rules, draft-order completion,
  marking an order paid, app charges, fulfilment creation), unless it only removes or
  deactivates (`…Delete`, `…Deactivate`);
- free: every other field (products, customers, inventory, metafields, …): stop those with
  `allowed_shopify_mutations`.

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

GUARDED_WORDS = ("accesstoken", "webhooksubscription", "pixel")
MONEY_WORDS = (
    "refund",
    "capture",
    "payment",
    "billing",
    "charge",
    "purchase",
    "transaction",
    "giftcard",
    "storecredit",
    "discount",
    "mandate",
    "markaspaid",
    "draftordercomplete",
    "appsubscription",
    "appusagerecord",
    "returnprocess",
    "pricerule",  # price rules are discounts by another name
    "fulfillmentcreate",  # fulfilling captures the order's payment where the shop captures at fulfillment
)
RELEASING_SUFFIXES = ("Delete", "Deactivate", "Remove")
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
    """ "guarded", "priced", "unpriceable" or "free" for a mutation field name (see the module)."""
    folded = name.lower()
    if any(w in folded for w in GUARDED_WORDS):
        return "guarded"
    if name in PRICED_MUTATIONS:
        return "priced"
    if any(w in folded for w in MONEY_WORDS) and not name.endswith(RELEASING_SUFFIXES):
        return "unpriceable"
    return "free"


def mutation_amounts(name: str, arguments: Mapping[str, Any]) -> list[Amount]:
    """The amounts a priced mutation field moves, read from its arguments. Raises Denial
    `body_invalid` when an amount or currency is missing or malformed."""
    return PRICED_MUTATIONS[name](arguments)


def _refund_create(args: Mapping[str, Any]) -> list[Amount]:
    inp = _object(args.get("input"), "refundCreate(input)")
    currency = _currency(inp.get("currency"), "refundCreate(input.currency)")
    transactions = inp.get("transactions")
    if transactions is None:
        return []  # a refund without transactions returns no money (restock, notes)
    if isinstance(transactions, dict):
        transactions = [transactions]  # GraphQL input coercion: one value given for a list is a list of one
    if not isinstance(transactions, list):
        raise _invalid("refundCreate(input.transactions) must be a list of transactions.")
    return [
        Amount(_amount(_object(t, "refundCreate(input.transactions[])").get("amount"), w), currency, w)
        for i, t in enumerate(transactions)
        for w in (f"refundCreate(input.transactions[{i}].amount)",)
    ]


def _order_capture(args: Mapping[str, Any]) -> list[Amount]:
    inp = _object(args.get("input"), "orderCapture(input)")
    where = "orderCapture(input.amount)"
    currency = _currency(inp.get("currency"), "orderCapture(input.currency)")
    return [Amount(_amount(inp.get("amount"), where), currency, where)]


def _gift_card_create(args: Mapping[str, Any]) -> list[Amount]:
    inp = _object(args.get("input"), "giftCardCreate(input)")
    where = "giftCardCreate(input.initialValue)"
    return [Amount(_amount(inp.get("initialValue"), where), None, where)]


def _gift_card_credit(args: Mapping[str, Any]) -> list[Amount]:
    inp = _object(args.get("creditInput"), "giftCardCredit(creditInput)")
    money = _object(inp.get("creditAmount"), "giftCardCredit(creditInput.creditAmount)")
    where = "giftCardCredit(creditInput.creditAmount.amount)"
    currency = _currency(money.get("currencyCode"), "giftCardCredit(creditInput.creditAmount.currencyCode)")
    if currency is None:
        raise _invalid("giftCardCredit(creditInput.creditAmount.currencyCode) is required.")
    return [Amount(_amount(money.get("amount"), where), currency, where)]


PRICED_MUTATIONS = {
    "refundCreate": _refund_create,
    "orderCapture": _order_capture,
    "giftCardCreate": _gift_card_create,
    "giftCardCredit": _gift_card_credit,
}


def rest_refund_amounts(doc: Any) -> list[Amount]:
    """`POST …/orders/{id}/refunds.json`: `refund.transactions[].amount` in `refund.currency`."""
    refund = _object(doc.get("refund") if isinstance(doc, dict) else None, "refund")
    currency = _currency(refund.get("currency"), "refund.currency")
    transactions = refund.get("transactions")
    if transactions is None:
        return []
    if not isinstance(transactions, list):
        raise _invalid("refund.transactions must be a list of transactions.")
    out = []
    for i, t in enumerate(transactions):
        where = f"refund.transactions[{i}].amount"
        out.append(Amount(_amount(_object(t, "refund.transactions[]").get("amount"), where), currency, where))
    return out


def rest_gift_card_amounts(doc: Any) -> list[Amount]:
    """`POST …/gift_cards.json`: `gift_card.initial_value`, in the shop's currency."""
    card = _object(doc.get("gift_card") if isinstance(doc, dict) else None, "gift_card")
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
