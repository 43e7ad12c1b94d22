"""One parse, generated, Shopify GraphQL: documents with aliases (some spelled like other mutation
fields), fragments, inline fragments, several operations, and amounts as string, number or
variable (with and without a default). Two oracles:

- a reference model built from the generator's own structure: which mutation fields the executed
  operation runs, in order, with which amounts; Keybrake's scope and price decisions follow from it;
- graphql-core's executor on the fake shop (tests/fakes/shopify_server): the mutation resolvers it
  really calls are exactly the fields Keybrake read, less those `@skip`/`@include` leave out
  (Keybrake counts those as run: an upper bound), and what it refunds and captures is what
  Keybrake priced for the fields that ran.

Examples per run: 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from graphql import GraphQLResolveInfo, default_field_resolver
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.policy import Policy
from keybrake.vendors.shopify import Shopify
from tests.fakes.shopify_server import FakeShopify
from tests.vendors.one_parse_gen import JSON, RATES, outcome, props, proxy_request, segments
from tests.vendors.shopify_calls import GQL, ORDER

V = Shopify()
KINDS = {
    "productCreate": "free",
    "refundCreate": "priced",
    "orderCapture": "priced",
    "draftOrderComplete": "unpriceable",
    "storefrontAccessTokenCreate": "guarded",
}
SOME = frozenset({"productCreate", "refundCreate", "orderCapture"})
AMOUNTS = ["1.25", "3", "0.50", "12.75"]


@dataclass
class Doc:
    """The generator's own model of a document: what it wrote, and what it means."""

    ops: list[tuple[str, str | None, list[tuple[str, Decimal | None, str]], str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    fragments: dict[str, list[tuple[str, Decimal | None, str]]] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)  # response keys a directive leaves out
    n: int = 0


def _args(name: str, amount: str) -> tuple[str, str]:
    """(arguments, selection set) of a mutation field, the amount written as `amount`."""
    if name == "refundCreate":
        tx = f'{{amount: {amount}, gateway: "g", kind: REFUND, orderId: "{ORDER}"}}'
        return f'(input: {{orderId: "{ORDER}", currency: USD, transactions: [{tx}]}})', "{ refund { id } }"
    if name == "orderCapture":
        capture = f'{{id: "{ORDER}", parentTransactionId: "t", amount: {amount}, currency: USD}}'
        return f"(input: {capture})", "{ transaction { id } }"
    if name == "productCreate":
        return '(product: {title: "A"})', "{ product { id } }"
    if name == "draftOrderComplete":
        return '(id: "gid://shopify/DraftOrder/1")', "{ draftOrder { id } }"
    return '(input: {title: "s"})', "{ storefrontAccessToken { id } }"


@st.composite
def _field(draw: st.DrawFn, doc: Doc, op_vars: list[str] | None) -> tuple[str, tuple[str, Decimal | None, str]]:
    """One mutation field: its text and (name, amount, response key). Variables only outside fragments."""
    name = draw(st.sampled_from(sorted(KINDS)))
    doc.n += 1
    alias = draw(st.sampled_from([None, f"a{doc.n}", *sorted(KINDS)]))
    if (alias or name) in doc.keys:
        alias = f"k{doc.n}"  # a key names one field (a repeat of the same field is drawn in _selection)
    doc.keys.add(alias or name)
    value = Decimal(draw(st.sampled_from(AMOUNTS)))
    hows = ["string", "number", "variable", "default"] if op_vars is not None else ["string", "number"]
    how = draw(st.sampled_from(hows)) if KINDS[name] == "priced" else "string"  # only amounts are variables
    if how == "string":
        amount = f'"{value}"'
    elif how == "number":
        amount = str(value)
    else:
        var = f"v{doc.n}"
        assert op_vars is not None
        op_vars.append(f'${var}: Money = "{value}"' if how == "default" else f"${var}: Money!")
        if how == "variable":
            doc.variables[var] = str(value)
        amount = f"${var}"
    head = f"{alias}: {name}" if alias else name
    leaves_out = (" @skip(if: true)", " @include(if: false)")
    directive = draw(st.sampled_from(["", "", "", *leaves_out, " @include(if: true)"]))
    if directive in leaves_out:
        doc.skipped.add(alias or name)
    arguments, selection = _args(name, amount)
    return f"{head}{arguments}{directive} {selection}", (
        name,
        value if KINDS[name] == "priced" else None,
        alias or name,
    )


@st.composite
def _selection(draw: st.DrawFn, doc: Doc, op_vars: list[str] | None, depth: int) -> tuple[str, list[Any]]:
    parts, fields = [], []
    last: tuple[str, Any] | None = None  # the last plain field, which "repeat" writes again
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["field", "field", "inline", "spread", "repeat", "meta"] if depth < 2 else ["field"])
        )
        if kind == "meta":
            parts.append("__typename")  # a meta field: runs no mutation, needs no allowlisting
        elif kind == "repeat" and last is not None:  # the same field again, same key: it runs once
            parts.append(last[0])
            fields.append(last[1])
        elif kind in ("field", "repeat"):
            text, f = draw(_field(doc, op_vars))
            parts.append(text)
            fields.append(f)
            last = (text, f)
        elif kind == "inline":
            text, inner = draw(_selection(doc, op_vars, depth + 1))
            parts.append(f"... on Mutation {{ {text} }}" if draw(st.booleans()) else f"... {{ {text} }}")
            fields += inner
        else:
            name = f"F{len(doc.fragments)}"
            doc.fragments[name] = []  # reserved before its own selection is drawn
            text, inner = draw(_selection(doc, None, depth + 1))
            doc.fragments[name] = inner
            doc.text.append(f"fragment {name} on Mutation {{ {text} }}")
            parts.append(f"...{name}")
            fields += inner
    return " ".join(parts), fields


@st.composite
def documents(draw: st.DrawFn) -> tuple[Doc, str | None]:
    doc = Doc()
    count = draw(st.integers(1, 3))
    for i in range(count):
        named = count > 1 or draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            text = f"query Q{i} {{ shop {{ name }} }}" if named else "{ shop { name } }"
            doc.ops.append(("query", f"Q{i}" if named else None, [], text))
            doc.text.append(text)
            continue
        op_vars: list[str] = []
        text, fields = draw(_selection(doc, op_vars, 0))
        head = f"mutation M{i}" if named else "mutation"
        params = f"({', '.join(op_vars)})" if op_vars else ""
        text = f"{head}{params} {{ {text} }}"
        doc.text.append(text)
        doc.ops.append(("mutation", f"M{i}" if named else None, fields, text))
    doc.text = draw(st.permutations(doc.text))  # definitions in any order
    names = [op[1] for op in doc.ops]
    chosen = draw(st.sampled_from(names)) if count > 1 or draw(st.booleans()) else None
    return doc, chosen


def _call(doc: Doc, chosen: str | None) -> bytes:
    return json.dumps({"query": "\n".join(doc.text), "variables": doc.variables, "operationName": chosen}).encode()


def _decide(body: bytes, policy: Policy) -> Any:
    vreq = V.parse(proxy_request("POST", GQL, "", body, JSON), segments(GQL))
    vreq = vreq.scoped(V.check_scope(policy, vreq))
    e = V.estimate(vreq, RATES)
    return e.pricing, e.amount


def _expected(doc: Doc, chosen: str | None, allowed: frozenset[str]) -> Any:
    for kind, _, fields, _ in sorted(doc.ops, key=lambda op: doc.text.index(op[3])):  # in document order
        for name, _, _ in fields if kind == "mutation" else ():
            if name not in allowed:
                return ("denied", "endpoint_guarded" if KINDS[name] == "guarded" else "scope_violation")
    kind, _, fields, _ = next(op for op in doc.ops if op[1] == chosen) if chosen else doc.ops[0]
    fields = list({key: (n, a, key) for n, a, key in reversed(fields)}.values())  # one per response key
    classes = {KINDS[n] for n, _, _ in fields} if kind == "mutation" else set()
    if "unpriceable" in classes:
        return ("unpriceable", 0)
    if "priced" in classes:
        return ("priced", int(sum(a for _, a, _ in fields if a is not None) * 1_000_000))
    return ("free", 0)


@props(400)
@given(documents())
def test_scope_and_price_follow_the_fields_the_executed_operation_runs(generated: tuple[Doc, str | None]) -> None:
    doc, chosen = generated
    body = _call(doc, chosen)
    assert outcome(_decide, body, Policy(vendor_data={"allowed_shopify_mutations": sorted(KINDS)})) == _expected(
        doc, chosen, frozenset(KINDS)
    )
    assert outcome(_decide, body, Policy(vendor_data={"allowed_shopify_mutations": sorted(SOME)})) == _expected(
        doc, chosen, SOME
    )


@props(400)
@given(documents())
def test_graphql_core_runs_exactly_the_mutation_fields_keybrake_read(generated: tuple[Doc, str | None]) -> None:
    doc, chosen = generated
    vreq = V.parse(proxy_request("POST", GQL, "", _call(doc, chosen), JSON), segments(GQL))
    mutations = vreq.detail.mutations  # type: ignore[attr-defined]
    read = [
        (m.name, sum(a.value for a in m.amounts))
        for m in mutations
        if m.key not in doc.skipped and not m.name.startswith("__")
    ]
    fake = FakeShopify()
    fake.add_order("1001", captured=Decimal(1000), authorized=Decimal(1000))
    ran: list[str] = []

    def record(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        if info.parent_type.name == "Mutation":
            ran.append(info.field_name)
        return default_field_resolver(source, info, **args)

    result = fake.execute("\n".join(doc.text), doc.variables, chosen, record)
    assert result.errors is None, result.errors  # the generator writes only valid documents
    assert ran == [name for name, _ in read]
    order = fake.orders["1001"]
    moved = order.refunded + (order.captured - 1000)
    assert moved == sum((amount for name, amount in read if KINDS[name] == "priced"), Decimal(0))
