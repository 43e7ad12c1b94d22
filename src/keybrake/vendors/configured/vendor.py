"""`ConfiguredVendor`: the `Vendor` protocol (vendors/base.py) driven by a definition file
(docs/vendors.md, vendors defined by a file). Every decision reads the definition and what
`reading.py` learnt in the one parse; nothing here does I/O."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

from keybrake.core.errors import Denial
from keybrake.core.money import MICRO
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors.base import (
    CORE_POLICY_FIELDS,
    REDACTED,
    Estimate,
    Rates,
    Rendered,
    ScopeResult,
    ValidatedSecret,
    VendorCost,
    VendorDefaults,
    VendorRequest,
    retry_after,
)
from keybrake.vendors.configured import body_key, reading, routing, scoping
from keybrake.vendors.configured import schema as s
from keybrake.vendors.configured.paths import JsonPath, any_case_key, read, replace

_NO_PARSE = reading.ConfiguredParse(None, "")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class ConfiguredVendor(VendorDefaults):
    """A vendor built from `definition`; `prices` holds the micro-USD value of every price that
    names a setting (`Usd.setting` → value), read when the vendor is built."""

    def __init__(self, definition: s.Definition, prices: Mapping[str, int] | None = None) -> None:
        d = self.definition = definition
        self.prices = dict(prices or {})
        self.name = d.name
        self.default_base_url = d.base_url
        self.upstream_hosts = d.upstream_hosts
        self.max_body_bytes = d.max_body_bytes
        idem = {d.request.idempotency_header} if d.request.idempotency_header else set()
        self.forwarded_headers = frozenset(d.request.forward_headers | idem)
        self.vault_key_header = d.vault_key.header
        self.trailing_slash = d.request.trailing_slash
        self.path_rules = routing.path_rules(d)
        if d.request.idempotency_header is not None:
            self.idempotency_header = d.request.idempotency_header
        # A definition names an idempotency header only for a vendor that replays retries under it.
        self.replays_retries = d.request.idempotency_header is not None
        self.policy_fields = (
            CORE_POLICY_FIELDS
            | {sc.field for sc in d.scopes}
            | ({"daily_send_cap"} if any(e.sends is not None for e in d.endpoints) else set())
        )
        self.endpoints = d.endpoints
        self.patterns = tuple(e.match for e in d.endpoints)
        self.free = tuple(e.match for e in d.endpoints if e.pricing == "free")
        self.money_moving = tuple(e.match for e in d.endpoints if e.pricing != "free")
        self.guarded: tuple[EndpointPattern, ...] = tuple(
            parse_pattern(e.match.text, casefold=True) for e in d.endpoints if e.guarded
        )
        self.read_names = frozenset(p.top for p in _read_paths(d) if p.top is not None) | frozenset(
            (d.vault_key.body_field,) if d.vault_key.body_field else ()
        )
        self.read_roots = frozenset(p.top is None for p in _read_paths(d))  # True: a path into an array body
        # Form fields that may repeat (`to=…&to=…`): those an `array_length` count reads as lists.
        self.list_names = frozenset(
            p.top
            for e in d.endpoints
            if e.items is not None and e.items.count == "array_length"
            for p in e.items.paths
            if p.top is not None
        )

    # -- credentials ----------------------------------------------------------------------

    def validate_secret(self, secret: Any) -> ValidatedSecret:
        """A one-string secret (with `prefix` when the definition sets one) or a JSON object of
        exactly the definition's `fields`, each a non-empty string. Raises ValueError."""
        c = self.definition.credential
        title = self.definition.title
        if c.fields is None:
            if not isinstance(secret, str) or not secret or not secret.isprintable():
                raise ValueError(f"a {title} secret is one non-empty string")
            if c.prefix is not None and not secret.startswith(c.prefix):
                raise ValueError(f"a {title} secret starts with {c.prefix}")
            return ValidatedSecret(secret.encode(), f"{c.prefix or ''}…{_tail(secret)}", None)
        if not isinstance(secret, dict) or set(secret) != set(c.fields):
            raise ValueError(f"a {title} secret is an object with exactly the fields {', '.join(c.fields)}")
        if not all(isinstance(v, str) and v and v.isprintable() for v in secret.values()):
            raise ValueError(f"each field of a {title} secret is a non-empty string")
        blob = json.dumps({f: secret[f] for f in c.fields}, separators=(",", ":")).encode()
        last = secret[c.fields[-1]]
        return ValidatedSecret(blob, f"{c.fields[-1]}=…{_tail(last)}", None)

    def _fill(self, template: str, secret: bytes) -> str:
        c = self.definition.credential
        text = secret.decode()
        values = {"secret": text} if c.fields is None else json.loads(text)
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)

    def upstream_headers(self, secret: bytes) -> list[tuple[str, str]]:
        """The credential as the definition injects it (`credential.inject`); never logged."""
        c = self.definition.credential
        if c.inject == "bearer":
            return [("authorization", f"Bearer {self._fill(c.value, secret)}")]
        if c.inject == "basic":
            pair = f"{self._fill(c.username, secret)}:{self._fill(c.password, secret)}"
            return [("authorization", "Basic " + base64.b64encode(pair.encode()).decode())]
        if c.inject == "header":
            assert c.header is not None
            return [(c.header, self._fill(c.value, secret))]
        return []

    def upstream_query(self, secret: bytes) -> list[tuple[str, str]]:
        """Query parameters the credential adds (`inject = "query"`), else none."""
        c = self.definition.credential
        if c.inject != "query":
            return []
        assert c.query is not None
        return [(c.query, self._fill(c.value, secret))]

    def request_id(self, headers: dict[str, str]) -> str | None:
        h = self.definition.request.request_id_header
        return headers.get(h) if h else None

    def canonical(self, method: str, path: tuple[str, ...]) -> tuple[str, ...]:
        """Identity, after the path-spelling rules (`routing.check_path`: the path alphabet, near-misses
        of priced, guarded and scoped endpoints) and the case-variant rule. Raises 400 path_invalid."""
        routing.check_path(self.path_rules, self.definition.title, method, path)
        self.check_spelling(method, path)
        return path

    # -- the one parse --------------------------------------------------------------------

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest:
        d = self.definition
        for name in sorted(d.request.refuse_headers):
            if req.header_all(name):
                raise Denial(
                    "header_invalid",
                    f"{d.title} requests through Keybrake may not carry {name}: it changes what the call acts on "
                    "in a way this key's scope does not cover. Nothing was sent. Do not retry with it.",
                )
        src = reading.source(d, req, self.read_names, self.list_names, self.read_roots)
        c = d.credential
        if c.inject == "query" and c.query is not None and c.query in src.params.tops:
            raise Denial(
                "param_ambiguous",
                f"{c.query!r} is the credential's parameter: Keybrake adds it; remove it. Nothing was sent.",
            )
        endpoint = _endpoint(self.endpoints, req.method, path)
        items = amount = None
        if endpoint is not None:
            if endpoint.items is not None:
                items = reading.count_items(src, endpoint.items)
            if endpoint.amount is not None:
                amount = reading.read_amount(src, endpoint.amount)
        scoping.check_forbidden(d.forbids, src, req.method, path)
        scoped = scoping.read_scopes(d.scopes, src, req.method, path)
        canonical = json.dumps(src.doc, sort_keys=True, ensure_ascii=False) if src.is_json else ""
        field = d.vault_key.body_field
        drop = body_key.member_to_drop(src.doc, field, src.match, req, d.vault_key.header) if field else None
        forwarded = body_key.without(src.doc, drop) if drop is not None else None
        detail = reading.ConfiguredParse(endpoint, canonical, items, amount, MappingProxyType(scoped), drop, forwarded)
        return VendorRequest(req.method, path, src.params, detail=detail)

    def upstream_body(self, vreq: VendorRequest, body: bytes) -> bytes:
        """The agent's bytes, or, when a body member carried the vault key, the parsed body
        without it (`[vault_key] body_field`): the vendor never receives the vault key."""
        forwarded = _detail(vreq).forwarded
        return forwarded if forwarded is not None else body

    # -- scope ----------------------------------------------------------------------------

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        """Refuse (403 scope_violation) a value outside the key's scope fields, and — fail closed —
        a request that matches no `[[endpoint]]` when the key sets any of this definition's scope
        fields or `daily_send_cap`: what such a request sends, and to whom, cannot be read."""
        allowed = policy.vendor_fields(self.scope_policy)
        detail = _detail(vreq)
        if detail.endpoint is None and (allowed or policy.daily_send_cap is not None):
            limits = sorted(allowed) + (["daily_send_cap"] if policy.daily_send_cap is not None else [])
            raise Denial(
                "scope_violation",
                f"{vreq.method} /{'/'.join(vreq.path)} is not described by the {self.definition.title} "
                f"definition, so its recipients and scope cannot be checked against this key's "
                f"{', '.join(limits)}. Nothing was sent. Do not retry; use a listed endpoint or a key without them.",
            )
        scoping.check(self.definition.scopes, allowed, detail.scoped)
        return ScopeResult()

    def scope_policy(self, data: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        """This vendor's scope fields from the stored policy (None/absent: not set)."""
        return {sc.field: tuple(data[sc.field]) for sc in self.definition.scopes if data.get(sc.field) is not None}

    # -- cost -----------------------------------------------------------------------------

    def _usd(self, usd: s.Usd) -> int:
        return self.prices.get(usd.setting, usd.micro) if usd.setting is not None else usd.micro

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        detail = _detail(vreq)
        e = detail.endpoint
        if e is None or e.pricing == "unpriceable":
            return Estimate("unpriceable", 0, "call")
        if e.pricing == "free":
            return Estimate("free", 0, "none")
        sends = detail.items or 0 if e.sends == "items" else int(e.sends or 0)
        if e.pricing == "fixed":
            assert e.usd is not None
            return Estimate("priced", self._usd(e.usd), "call", "usd", sends=sends)
        if e.pricing == "per_item":
            assert e.usd is not None and detail.items is not None
            return Estimate("priced", self._usd(e.usd) * detail.items, "item", "usd", sends=sends)
        assert detail.amount is not None
        major, currency = detail.amount
        return Estimate("priced", _to_usd(major, currency, rates, reserve=True), "amount", currency, sends=sends)

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        """A refused answer (≥ 400) or a free call costs nothing; `settle` reads the cost from the
        answer when it can (else the estimate stands); fixed and per-item prices are final."""
        e = _detail(vreq).endpoint
        if status >= 400 or estimate.pricing == "free":
            return VendorCost(0, "none", "none")
        if e is None:  # not listed: unpriceable, the max_usd_per_call reserved stands
            return VendorCost(estimate.amount, "estimate", estimate.cost_kind)
        if e.settle is not None:
            settled = _settled(doc, e.settle, rates)
            if settled is not None:
                return VendorCost(settled, "response", estimate.cost_kind)
        source = "flat_rate" if e.pricing in ("fixed", "per_item") and e.settle is None else "estimate"
        return VendorCost(estimate.amount, source, estimate.cost_kind)

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        return None  # a configured vendor's answer is final

    # -- answers, retries, errors ---------------------------------------------------------

    def summary(self, vreq: VendorRequest) -> dict[str, Any]:
        detail = _detail(vreq)
        out: dict[str, Any] = {}
        if detail.endpoint is not None:
            out["endpoint"] = detail.endpoint.match.text
        if detail.items is not None:
            out["items"] = detail.items
        return out

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        """Method, path and the canonical body (JSON) or sorted parameters (form, query); None when the
        definition names no idempotency header: the vendor ignores an `Idempotency-Key`, so a request
        repeating one is a second action, reserved and counted like any other."""
        return self._request_hash(vreq) if self.replays_retries else None

    def _request_hash(self, vreq: VendorRequest) -> str:
        """SHA-256 (hex) of the method, path and the canonical body or sorted parameters."""
        h = hashlib.sha256(f"{vreq.method} /{'/'.join(vreq.path)}\0{_detail(vreq).canonical}".encode())
        for name, values in sorted(vreq.params.values.items()):
            h.update(b"\0" + name.encode() + b"=" + b"\1".join(v.encode() for v in values))
        return h.hexdigest()

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        return self._request_hash(vreq) if vreq.method == "POST" else None

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        """Every `answer.redact` path, and the matched endpoint's, replaced by REDACTED."""
        e = _detail(vreq).endpoint
        found = []
        for p in (*self.definition.redact, *(e.redact if e is not None else ())):
            if replace(doc, p, REDACTED, any_case_key):
                found.append(p.text)
        return found

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        """The definition's `[error] body` with {code}, {message}, {status} filled (a string
        exactly "{status}" becomes the number) and `keybrake` at "{keybrake}" or, when the body
        does not place it, as a top-level `keybrake` member of an object body."""
        placed: list[bool] = []
        body = _fill_error(self.definition.error.body, denial, keybrake, placed)
        if not placed and isinstance(body, dict) and "keybrake" not in body:
            body["keybrake"] = keybrake
        headers = retry_after(denial)
        if self.definition.error.content_type != "application/json":
            headers["Content-Type"] = self.definition.error.content_type
        return Rendered(body, headers)


def _tail(secret: str) -> str:
    """The last 4 characters of a secret for its hint, none of a short one (under 12)."""
    return secret[-4:] if len(secret) >= 12 else ""


def _read_paths(d: s.Definition) -> list[JsonPath]:
    out: list[JsonPath] = [p for sc in d.scopes for p in sc.paths] + [p for f in d.forbids for p in f.paths]
    for e in d.endpoints:
        if e.items is not None:
            out += e.items.paths
        if e.amount is not None:
            out += [p for p in (e.amount.path, e.amount.currency_path) if p is not None]
    return out


def _endpoint(endpoints: tuple[s.Endpoint, ...], method: str, path: tuple[str, ...]) -> s.Endpoint | None:
    return next((e for e in endpoints if e.match.matches(method, path)), None)


def _detail(vreq: VendorRequest) -> reading.ConfiguredParse:
    return vreq.detail if isinstance(vreq.detail, reading.ConfiguredParse) else _NO_PARSE


def _to_usd(major: Decimal, currency: str, rates: Rates, *, reserve: bool) -> int:
    """`major` units of `currency` in micro-USD through `rates`: rounded up when reserving (never
    under-reserve), half-up when settling (docs/policy.md, currencies). Raises 400
    currency_not_supported for a currency without a rate."""
    rate = rates.get(currency)
    if rate is None:
        raise Denial(
            "currency_not_supported",
            f"Currency {currency.upper()!r} has no USD rate configured, so this call cannot be priced against the "
            "key's caps. Ask the operator to add it to KEYBRAKE_FX_RATES_FILE. Do not retry.",
        )
    micro = major * Decimal(rate) * MICRO
    return int(micro.to_integral_value(rounding=ROUND_CEILING if reserve else ROUND_HALF_UP))


def _settled(doc: Any, money: s.Money, rates: Rates) -> int | None:
    """The cost an answer states at `money` (micro-USD), or None when absent or unreadable."""
    values = read(doc, money.path, any_case_key)
    if len(values) != 1:
        return None
    currency = money.currency
    if money.currency_path is not None:
        cur = read(doc, money.currency_path, any_case_key)
        currency = cur[0].lower() if len(cur) == 1 and isinstance(cur[0], str) and len(cur[0]) == 3 else None
    if currency is None or currency not in rates:
        return None
    value = values[0]
    if isinstance(value, str) and value.startswith("-"):
        value = value[1:]  # vendors state prices as negative balances ("-0.0075")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        value = abs(value)
    try:
        major = reading.to_major(value, money, currency)
    except Denial:
        return None
    return _to_usd(major, currency, rates, reserve=False)


def _fill_error(node: Any, denial: Denial, keybrake: dict[str, Any], placed: list[bool]) -> Any:
    if isinstance(node, dict):
        return {k: _fill_error(v, denial, keybrake, placed) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_error(v, denial, keybrake, placed) for v in node]
    if not isinstance(node, str):
        return node
    if node == "{status}":
        return denial.status
    if node == "{keybrake}":
        placed.append(True)
        return keybrake
    return (
        node.replace("{code}", denial.code).replace("{message}", denial.message).replace("{status}", str(denial.status))
    )
