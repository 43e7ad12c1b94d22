"""A vendor definition as Keybrake holds it once read: frozen dataclasses, no I/O
(docs/vendors.md, vendors defined by a file). `configured/parse.py` builds them from TOML.

Money is integer micro-USD; a price may instead name a `KEYBRAKE_*` setting (`Usd.setting`),
whose value the vendor receives when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keybrake.core.patterns import EndpointPattern
from keybrake.vendors.configured.paths import JsonPath

FORMAT = 1
PRICING = ("free", "fixed", "per_item", "amount", "unpriceable")
INJECT = ("bearer", "basic", "header", "query")
ARRIVES = ("bearer", "basic_user", "basic_password", "header")
BODIES = ("json", "form")
JSON_KEYS = ("exact", "case_insensitive")
COUNTS = ("array_length", "addresses", "values")
MATCH_KINDS = ("exact", "prefix", "email_domain", "e164_prefix")
UNITS = ("major", "minor")
MINOR_UNITS = ("iso4217", "stripe")  # the currency-exponent table of unit = "minor" (reading.exponent_of)


class DefinitionError(ValueError):
    """A definition Keybrake refuses: `source` (the file or package resource), `where` (the key
    path, e.g. `endpoint[3].pricing`, "" for the file as a whole) and `what` is wrong."""

    def __init__(self, source: str, where: str, what: str) -> None:
        self.source, self.where, self.what = source, where, what
        super().__init__(f"{source}: {where}: {what}" if where else f"{source}: {what}")


@dataclass(frozen=True)
class Usd:
    """A price in micro-USD, or the `KEYBRAKE_*` setting (a decimal in USD) that gives it, with
    `micro` its default then."""

    micro: int
    setting: str | None = None


@dataclass(frozen=True)
class Credential:
    """How the operator's secret is stored (`fields`: a JSON object of exactly these string
    fields; None: one string, starting with `prefix` if set) and sent upstream (`inject`).
    Templates (`value`, `username`, `password`) name `{secret}` or `{<field>}`."""

    fields: tuple[str, ...] | None
    prefix: str | None
    inject: str  # INJECT
    header: str | None  # inject = header: its name, lower-case
    query: str | None  # inject = query: the parameter name
    username: str
    password: str
    value: str


@dataclass(frozen=True)
class VaultKey:
    """Where the agent's vault key arrives (ARRIVES); `header`: its lower-case name;
    `body_field`: a top-level JSON body member that may carry it too (checked, never forwarded;
    configured/body_key.py)."""

    arrives: str
    header: str | None
    body_field: str | None = None


@dataclass(frozen=True)
class RequestRules:
    bodies: frozenset[str]
    json_keys: str  # JSON_KEYS
    idempotency_header: str | None  # lower-case
    request_id_header: str | None  # lower-case
    forward_headers: frozenset[str]  # lower-case
    refuse_headers: frozenset[str] = frozenset()  # lower-case: a request carrying one is refused
    trailing_slash: bool = False  # `/a/b/` is the operation `/a/b` (the vendor's router ignores it)
    path_characters: str = ""  # characters a path segment may hold beyond the default alphabet (routing.py)


@dataclass(frozen=True)
class ErrorShape:
    """The vendor's error body (`body`, any JSON value whose strings may hold `{code}`,
    `{message}`, `{status}`, `{keybrake}`) and its content type."""

    body: Any
    content_type: str


@dataclass(frozen=True)
class Items:
    count: str  # COUNTS
    paths: tuple[JsonPath, ...]
    address_field: str = "email"


@dataclass(frozen=True)
class Money:
    """An amount at `path` (in `unit`) and its currency (fixed, or read at `currency_path`)."""

    path: JsonPath
    unit: str  # UNITS
    currency: str | None
    currency_path: JsonPath | None
    minor_units: str = "iso4217"  # MINOR_UNITS


@dataclass(frozen=True)
class ToolDecl:
    """An endpoint's `[endpoint.tool]`: the MCP tool it is offered as (configured/tools.py).
    `name` is the tool's own part (the MCP name is `<vendor>_<name>`); `path` the concrete
    template (`{name}` per wildcard segment); `schema_json` the input schema as compact JSON
    text (None: none given); `moves` None: said from the pricing class; `array_arg`: the body is
    a JSON array, the value of that argument, and the schema describes one item."""

    name: str
    description: str
    method: str
    path: str
    schema_json: str | None = None
    moves: str | None = None
    array_arg: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One `[[endpoint]]`: its pattern, pricing class and the values that price it."""

    index: int
    match: EndpointPattern
    pricing: str  # PRICING
    usd: Usd | None = None
    items: Items | None = None
    amount: Money | None = None
    sends: str | int | None = None  # "items" or a fixed count, for daily_send_cap
    settle: Money | None = None
    guarded: bool = False
    redact: tuple[JsonPath, ...] = ()
    tool: ToolDecl | None = None  # offered as an MCP tool only when the definition says so


@dataclass(frozen=True)
class Scope:
    """One `[[scope]]`: the policy field, how its values match, and where it applies."""

    field: str
    match: str  # MATCH_KINDS
    paths: tuple[JsonPath, ...]
    endpoints: tuple[EndpointPattern, ...] | None
    required: bool
    address_field: str = "email"


@dataclass(frozen=True)
class Forbid:
    """One `[[forbid]]`: values refused at `paths` on every key (403 scope_violation), compared
    ignoring case and surrounding blanks; a value ending in `*` matches as a prefix."""

    paths: tuple[JsonPath, ...]
    values: tuple[str, ...]  # folded (core.names.fold)
    endpoints: tuple[EndpointPattern, ...] | None
    why: str | None = None


@dataclass(frozen=True)
class Definition:
    """A whole vendor definition (one TOML file)."""

    source: str
    name: str
    title: str
    base_url: str
    upstream_hosts: tuple[str, ...]
    max_body_bytes: int
    credential: Credential
    vault_key: VaultKey
    request: RequestRules
    error: ErrorShape
    redact: tuple[JsonPath, ...]
    endpoints: tuple[Endpoint, ...]
    scopes: tuple[Scope, ...]
    forbids: tuple[Forbid, ...] = ()

    def settings(self) -> dict[str, int]:
        """Every `KEYBRAKE_*` setting its prices name → its default in micro-USD."""
        out: dict[str, int] = {}
        for e in self.endpoints:
            if e.usd is not None and e.usd.setting is not None:
                out[e.usd.setting] = e.usd.micro
        return out
