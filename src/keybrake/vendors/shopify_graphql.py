"""Reading a Shopify Admin GraphQL request once: which operation runs and which root fields it runs.

GraphQL is one endpoint (`POST /admin/api/{version}/graphql.json`), so scope and price are decided
per operation (docs/sdk-shopify.md). The document is parsed with graphql-core, never with
regular expressions, and read the way a GraphQL server executes it (GraphQL spec, "Executing
Requests"):

- the operation executed is the one `operationName` names, or the document's only operation;
- its root selection set is flattened through fragment spreads and inline fragments (a spread of
  an undefined fragment, a fragment cycle, two fragments or operations of one name are refused);
- a field is known by its name, never by its alias (`refund: refundCreate(…)` runs `refundCreate`);
  fields of one response key run once (the same field twice counts once; two different fields
  under one key are refused);
- argument values are read from inline literals or from `variables` (a variable's default when
  the request gives none), each value in one shape: numbers from a literal keep their exact
  text (`Decimal`), an object literal naming one field twice is refused.

`@skip`/`@include` are not evaluated: every field a directive could leave out counts as executed
(scope and price are upper bounds). Anything that cannot be read with certainty is refused with
400 `body_invalid` (fail closed). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from graphql import GraphQLError, parse
from graphql.language import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)

MAX_QUERY_CHARS = 100_000
MAX_TOKENS = 20_000  # graphql-core stops parsing past this many tokens (a parser-exhaustion guard)
MAX_ROOT_FIELDS = 250  # root fields of one operation, after fragments are expanded


class GraphQLRefused(ValueError):
    """The request cannot be read with certainty; the message says why (400 `body_invalid`)."""


@dataclass(frozen=True)
class RootField:
    """One field of an operation's root selection set: `name` (what runs), `key` (where its answer
    sits in `data`: the alias, else the name) and its arguments, read (`Decimal` for literal numbers,
    the JSON value for variables, None for an absent variable)."""

    name: str
    key: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Operation:
    """One operation of the document: `kind` is "query" or "mutation"; `name` None when anonymous."""

    kind: str
    name: str | None
    fields: tuple[RootField, ...]


@dataclass(frozen=True)
class GraphQLRequest:
    """Every operation of the document (each must be allowed) and the index of the one executed."""

    operations: tuple[Operation, ...]
    executed: int

    @property
    def operation(self) -> Operation:
        """The operation the server executes."""
        return self.operations[self.executed]


def read_request(body: Any) -> GraphQLRequest:
    """Read a GraphQL-over-HTTP JSON body `{"query", "variables", "operationName"}`.

    Raises GraphQLRefused when the body is not such an object, the document does not parse, or
    which operation runs, or which fields it runs, cannot be told.
    """
    if not isinstance(body, dict):
        raise GraphQLRefused('A GraphQL request is one JSON object {"query", "variables", "operationName"}.')
    extra = sorted(k for k in body if k not in ("query", "variables", "operationName", "extensions"))
    if extra:
        raise GraphQLRefused(f"Unknown GraphQL request member {extra[0][:40]!r}; send query, variables, operationName.")
    if body.get("extensions") not in (None, {}):
        raise GraphQLRefused("GraphQL request extensions (such as persisted queries) are not accepted; send the query.")
    variables = body.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise GraphQLRefused("GraphQL `variables` must be a JSON object.")
    name = body.get("operationName")
    if name is not None and not isinstance(name, str):
        raise GraphQLRefused("GraphQL `operationName` must be a string.")
    return read_document(body.get("query"), name or None, variables)


def read_document(query: Any, operation_name: str | None, variables: Mapping[str, Any]) -> GraphQLRequest:
    """Parse `query` and resolve its operations (see the module). Raises GraphQLRefused."""
    if not isinstance(query, str) or not query.strip():
        raise GraphQLRefused("A GraphQL request needs a `query` string.")
    if len(query) > MAX_QUERY_CHARS:
        raise GraphQLRefused(f"The GraphQL document is longer than {MAX_QUERY_CHARS} characters.")
    try:
        doc = parse(query, no_location=True, max_tokens=MAX_TOKENS)
    except GraphQLError as exc:
        raise GraphQLRefused(f"The GraphQL document does not parse: {exc.message[:200]}") from None
    except RecursionError:
        raise GraphQLRefused("The GraphQL document nests too deeply.") from None
    ops, fragments = _definitions(doc)
    executed = _executed(ops, operation_name)
    read = tuple(_operation(op, fragments, variables) for op in ops)
    return GraphQLRequest(read, executed)


def _definitions(doc: DocumentNode) -> tuple[list[OperationDefinitionNode], dict[str, FragmentDefinitionNode]]:
    ops: list[OperationDefinitionNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    for d in doc.definitions:
        if isinstance(d, OperationDefinitionNode):
            ops.append(d)
        elif isinstance(d, FragmentDefinitionNode):
            if d.name.value in fragments:
                raise GraphQLRefused(f"The GraphQL document defines fragment {d.name.value[:60]!r} twice.")
            fragments[d.name.value] = d
        else:
            raise GraphQLRefused("A GraphQL request document holds operations and fragments only (no type system).")
    if not ops:
        raise GraphQLRefused("The GraphQL document holds no operation.")
    names = [op.name.value for op in ops if op.name is not None]
    if len(set(names)) != len(names):
        raise GraphQLRefused("The GraphQL document names two operations alike.")
    if len(ops) > 1 and len(names) != len(ops):
        raise GraphQLRefused("An anonymous GraphQL operation must be the document's only operation.")
    return ops, fragments


def _executed(ops: list[OperationDefinitionNode], operation_name: str | None) -> int:
    if operation_name is None:
        if len(ops) != 1:
            raise GraphQLRefused("The GraphQL document holds several operations; name the one to run in operationName.")
        return 0
    for i, op in enumerate(ops):
        if op.name is not None and op.name.value == operation_name:
            return i
    raise GraphQLRefused(f"operationName {operation_name[:60]!r} names no operation of the document.")


def _operation(
    op: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]
) -> Operation:
    if op.operation is OperationType.SUBSCRIPTION:
        raise GraphQLRefused("Shopify's Admin API runs no GraphQL subscriptions.")
    defaults = {
        v.variable.name.value: v.default_value for v in op.variable_definitions or () if v.default_value is not None
    }
    nodes = _root_fields(op.selection_set, fragments, ())
    if len(nodes) > MAX_ROOT_FIELDS:
        raise GraphQLRefused(f"A GraphQL operation may run at most {MAX_ROOT_FIELDS} root fields.")
    fields = _merged([_root_field(node, variables, defaults) for node in nodes])
    kind = "mutation" if op.operation is OperationType.MUTATION else "query"
    return Operation(kind, op.name.value if op.name is not None else None, fields)


def _root_fields(
    selection_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode], stack: tuple[str, ...]
) -> list[FieldNode]:
    """The fields a selection set runs, fragments expanded in document order."""
    out: list[FieldNode] = []
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            out.append(sel)
        elif isinstance(sel, InlineFragmentNode):
            out += _root_fields(sel.selection_set, fragments, stack)
        elif isinstance(sel, FragmentSpreadNode):
            name = sel.name.value
            if name in stack:
                raise GraphQLRefused(f"GraphQL fragment {name[:60]!r} spreads itself.")
            fragment = fragments.get(name)
            if fragment is None:
                raise GraphQLRefused(f"GraphQL fragment {name[:60]!r} is not defined in the document.")
            out += _root_fields(fragment.selection_set, fragments, (*stack, name))
        if len(out) > MAX_ROOT_FIELDS:
            raise GraphQLRefused(f"A GraphQL operation may run at most {MAX_ROOT_FIELDS} root fields.")
    return out


def _merged(fields: list[RootField]) -> tuple[RootField, ...]:
    """Fields of one response key run once (GraphQL spec, CollectFields and field merging): the
    same field twice counts once; two different fields under one key are refused (Shopify refuses
    such a document as invalid; Keybrake does not guess which would run)."""
    seen: dict[str, RootField] = {}
    out = []
    for f in fields:
        prior = seen.get(f.key)
        if prior is None:
            seen[f.key] = f
            out.append(f)
        elif (prior.name, prior.arguments) != (f.name, f.arguments):
            raise GraphQLRefused(f"Response key {f.key[:60]!r} names two different fields or arguments.")
    return tuple(out)


def _root_field(node: FieldNode, variables: Mapping[str, Any], defaults: Mapping[str, ValueNode]) -> RootField:
    args: dict[str, Any] = {}
    for arg in node.arguments or ():
        if arg.name.value in args:
            raise GraphQLRefused(f"Field {node.name.value[:60]!r} is given argument {arg.name.value[:40]!r} twice.")
        args[arg.name.value] = _value(arg.value, variables, defaults)
    key = node.alias.value if node.alias is not None else node.name.value
    return RootField(node.name.value, key, args)


def _value(node: ValueNode, variables: Mapping[str, Any], defaults: Mapping[str, ValueNode]) -> Any:
    """A GraphQL input value as Python: str, Decimal (literal numbers, exact), bool, None, list, dict."""
    if isinstance(node, VariableNode):
        name = node.name.value
        if name in variables:
            return variables[name]
        default = defaults.get(name)
        return _value(default, {}, {}) if default is not None else None
    if isinstance(node, IntValueNode | FloatValueNode):
        return Decimal(node.value)
    if isinstance(node, StringValueNode | EnumValueNode):
        return node.value
    if isinstance(node, BooleanValueNode):
        return node.value
    if isinstance(node, NullValueNode):
        return None
    if isinstance(node, ListValueNode):
        return [_value(v, variables, defaults) for v in node.values]
    if isinstance(node, ObjectValueNode):
        out: dict[str, Any] = {}
        for f in node.fields:
            if f.name.value in out:
                raise GraphQLRefused(f"A GraphQL input object names field {f.name.value[:40]!r} twice.")
            out[f.name.value] = _value(f.value, variables, defaults)
        return out
    raise GraphQLRefused("A GraphQL value could not be read.")


def holds_mutation(value: Any) -> bool:
    """Whether an argument value holds, in any string inside it, a GraphQL document with a mutation
    operation (such a field runs a mutation Keybrake cannot scope or price from the outer one)."""
    if isinstance(value, str):
        if "mutation" not in value or "{" not in value:
            return False  # no keyword or no selection set: no document to parse (linear, unlike a parse)
        try:
            doc = parse(value, no_location=True, max_tokens=MAX_TOKENS)
        except (GraphQLError, RecursionError):
            return False
        return any(
            isinstance(d, OperationDefinitionNode) and d.operation is OperationType.MUTATION for d in doc.definitions
        )
    if isinstance(value, Mapping):
        return any(holds_mutation(v) for v in value.values())
    if isinstance(value, list):
        return any(holds_mutation(v) for v in value)
    return False
