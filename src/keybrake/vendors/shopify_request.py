"""The one parse of a Shopify Admin request (docs/sdk-shopify.md): the path's spelling, the GraphQL
document or the REST body, and what each mutation field or REST write moves. Pure.

Paths are `/admin/api/{version}/…` (`version`: `YYYY-MM` or `unstable`) or `/admin/oauth/…`;
GraphQL is `POST /admin/api/{version}/graphql.json` only, with a JSON body
(`{"query", "variables", "operationName"}`) or an `application/graphql` body (the query alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.params import Params, parse_json_body, query_params
from keybrake.core.paths import join
from keybrake.core.patterns import parse_pattern
from keybrake.vendors.shopify_classes import RUNS_A_DOCUMENT, rest_priced
from keybrake.vendors.shopify_graphql import GraphQLRefused, GraphQLRequest, holds_mutation, read_request
from keybrake.vendors.shopify_money import (
    Amount,
    mutation_amounts,
    mutation_class,
    rest_gift_card_amounts,
    rest_refund_amounts,
    rest_transaction_amounts,
)

REST_PRICERS = {
    "refund": rest_refund_amounts,
    "gift_card": rest_gift_card_amounts,
    "transaction": rest_transaction_amounts,
}

GRAPHQL = parse_pattern("POST /admin/api/*/graphql.json")
_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")
JSON = "application/json"
GRAPHQL_MEDIA = "application/graphql"


@dataclass(frozen=True)
class MutationRead:
    """One mutation field of the executed operation: its class (`shopify_money.mutation_class`;
    "unpriceable" too for a priced field with an argument its pricer does not know, and for a
    field given a mutation document as an argument) and, when priced, the amounts read from its
    arguments."""

    name: str
    key: str  # where its answer sits in `data` (alias or name)
    kind: str  # guarded | priced | unpriceable | free
    amounts: tuple[Amount, ...] = ()


@dataclass(frozen=True)
class ShopifyParse:
    """What the one parse learnt (`VendorRequest.detail`): `graphql` (None for REST), the executed
    operation's mutation fields read (`mutations`), and a REST write's amounts (`rest_amounts`)."""

    graphql: GraphQLRequest | None = None
    mutations: tuple[MutationRead, ...] = ()
    rest_amounts: tuple[Amount, ...] | None = None


def check_path(method: str, path: tuple[str, ...]) -> None:
    """Refuse what Keybrake cannot classify with certainty (400 `path_invalid`): a path outside
    `/admin/api/{version}/` and `/admin/oauth/`, GraphQL spelled otherwise than `graphql.json`
    under a version, and a write whose last segment does not end in `.json`."""
    where = f"{method} {join(path)[:200]}"
    if len(path) < 2 or path[0] != "admin" or path[1] not in ("api", "oauth"):
        raise _path(f"{where} is not a Shopify Admin API path (/admin/api/{{version}}/… or /admin/oauth/…).")
    if path[1] == "api" and (len(path) < 4 or not _VERSION.match(path[2])):
        raise _path(f"{where} names no API version: Shopify Admin paths are /admin/api/{{YYYY-MM}}/….")
    if any("graphql" in seg.lower() for seg in path) and not (len(path) == 4 and path[3] == "graphql.json"):
        raise _path(f"{where}: the Admin GraphQL API is POST /admin/api/{{version}}/graphql.json, spelled so.")
    if path[-1] == "graphql.json" and method != "POST":
        raise Denial("method_not_supported", f"{where}: Keybrake takes GraphQL as POST only. Do not retry unchanged.")
    if method != "GET" and path[1] == "api" and not path[-1].endswith(".json"):
        raise _path(f"{where}: Shopify Admin REST writes end in .json; send that spelling.")


def parse_body(
    method: str, path: tuple[str, ...], media: str, query: bytes, body: bytes
) -> tuple[Params, ShopifyParse]:
    """The request's parameters and `ShopifyParse`. Raises Denial (400 body_invalid,
    param_ambiguous; 415 unsupported_media_type)."""
    params = query_params(query)
    if GRAPHQL.matches(method, path):
        if query:
            raise Denial("param_ambiguous", "GraphQL is read from the request body only; remove the query string.")
        if media == GRAPHQL_MEDIA:
            doc: Any = {"query": _text(body)}
        elif media == JSON:
            doc, params = parse_json_body(body)
        else:
            raise Denial(
                "unsupported_media_type", "Shopify GraphQL bodies must be application/json or application/graphql."
            )
        return params, _graphql(doc)
    if not body:
        return params, ShopifyParse()
    if media != JSON:
        raise Denial("unsupported_media_type", f"Shopify REST bodies must be application/json (got {media or 'none'}).")
    doc, body_params = parse_json_body(body)
    if params.values:
        raise Denial("param_ambiguous", "Send a Shopify REST write's parameters in its JSON body only, not the query.")
    priced = rest_priced(method, path)
    read = REST_PRICERS[priced](doc) if priced is not None else None
    return body_params, ShopifyParse(rest_amounts=tuple(read) if read is not None else None)


def _graphql(doc: Any) -> ShopifyParse:
    try:
        request = read_request(doc)
    except GraphQLRefused as exc:
        raise Denial("body_invalid", f"{exc} Nothing was sent. Do not retry unchanged.") from None
    reads = []
    if request.operation.kind == "mutation":
        for f in request.operation.fields:
            kind = mutation_class(f.name)
            read = mutation_amounts(f.name, f.arguments) if kind == "priced" else []
            if read is None or runs_a_document(f.name, f.arguments):
                kind, read = "unpriceable", []  # an unknown key, or a mutation hidden in a string
            reads.append(MutationRead(f.name, f.key, kind, tuple(read)))
    return ShopifyParse(graphql=request, mutations=tuple(reads))


def runs_a_document(name: str, arguments: Any) -> bool:
    """Whether a mutation field runs another mutation: it is one of `RUNS_A_DOCUMENT`, or an
    argument holds a GraphQL mutation document (guarded and unpriceable)."""
    return name in RUNS_A_DOCUMENT or holds_mutation(arguments)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Denial("body_invalid", "The GraphQL document is not valid UTF-8.") from None


def _path(message: str) -> Denial:
    return Denial("path_invalid", f"Request path refused: {message} Nothing was sent. Do not retry unchanged.")
