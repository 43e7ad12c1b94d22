"""A vendor definition file, whole: TOML text → `schema.Definition`, or a `DefinitionError`
naming the file, the key path and what is wrong (docs/vendors.md, vendors defined by a file)."""

from __future__ import annotations

import tomllib
from typing import Any

from keybrake.core.destinations import domain_allowed
from keybrake.core.names import fold
from keybrake.core.patterns import shadows
from keybrake.vendors.configured import parse as p
from keybrake.vendors.configured import schema as s
from keybrake.vendors.configured.parse import Bad, Table
from keybrake.vendors.configured.tools import check_tools, tool_decl


def parse_definition(text: str, source: str, stem: str | None = None) -> s.Definition:
    """Parse and validate one definition. `source` names it in errors; `stem` (a file's name
    without `.toml`) must equal its `name`. Raises DefinitionError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise s.DefinitionError(source, "", f"not valid TOML: {exc}") from None
    try:
        return _definition(data, source, stem)
    except Bad as bad:
        raise s.DefinitionError(source, bad.where, bad.what) from None


def _definition(data: dict[str, Any], source: str, stem: str | None) -> s.Definition:
    t = Table(data, "")
    fmt = t.need("format", p.positive_int(1, 1000))
    if fmt != s.FORMAT:
        raise Bad("format", f"this Keybrake reads format {s.FORMAT} (got {fmt})")
    name = t.need("name", p.name)
    if stem is not None and stem != name:
        raise Bad("name", f"{name!r} must equal the file name ({stem}.toml)")
    title = t.get("title", p.text, name)
    base_url = t.need("base_url", p.base_url)
    hosts = t.need("upstream_hosts", p.hosts)
    host = (base_url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]).lower()
    if not any(host == h or (h.startswith("*.") and domain_allowed(host, (h,))) for h in hosts):
        raise Bad("base_url", f"its host {host!r} is not one of upstream_hosts")
    max_body = t.get("max_body_bytes", p.positive_int(1024, p.MAX_BODY), 1024 * 1024)
    credential = t.need("credential", _credential)
    vault_key = t.get("vault_key", _vault_key, s.VaultKey("bearer", None))
    request = t.get("request", _request, s.RequestRules(frozenset({"json"}), "exact", None, None, frozenset()))
    error = t.need("error", _error)
    redact = t.get("answer", _answer, ())
    endpoints = t.get("endpoint", _endpoints, ())
    scopes = t.get("scope", _scopes, ())
    forbids = t.get("forbid", _forbids, ())
    t.done()
    _check_header_options(credential, vault_key, request)
    _check_one_reading(endpoints, scopes)
    check_tools(endpoints, request, _read_paths(endpoints, scopes, forbids))
    if vault_key.body_field is not None and "json" not in request.bodies:
        raise Bad("vault_key.body_field", "is a JSON body member: request.bodies must include 'json'")
    parts = (name, title, base_url, hosts, max_body, credential, vault_key, request, error, redact, endpoints, scopes)
    return s.Definition(source, *parts, forbids=forbids)


def header_options(request: s.RequestRules) -> list[tuple[str, str]]:
    """(key path, lower-case header name) of every header-valued `[request]` option."""
    out = [(f"request.{k}", h) for k, h in (("idempotency_header", request.idempotency_header),
                                            ("request_id_header", request.request_id_header)) if h]  # fmt: skip
    for key, names in (("forward_headers", request.forward_headers), ("refuse_headers", request.refuse_headers)):
        out += [(f"request.{key}", h) for h in sorted(names)]
    return out


def _check_one_reading(endpoints: tuple[s.Endpoint, ...], scopes: tuple[s.Scope, ...]) -> None:
    """A field is counted as its scopes read it: `count = "values"` (one per value) at a path an
    `email_domain` scope reads as addresses (`"a@x.io, b@y.io"` is two) would price fewer
    recipients than the scope checks; such a count must be `"addresses"`."""
    read_as_addresses = {jp.text: j for j, sc in enumerate(scopes) if sc.match == "email_domain" for jp in sc.paths}
    for e in endpoints:
        for jp in e.items.paths if e.items is not None and e.items.count == "values" else ():
            if jp.text in read_as_addresses:
                raise Bad(
                    f"endpoint[{e.index}].items.count",
                    f"'values' counts {jp.text!r} once per value, but scope[{read_as_addresses[jp.text]}] reads "
                    "addresses there (a comma-separated string is several): use count = 'addresses'",
                )


def _read_paths(
    endpoints: tuple[s.Endpoint, ...], scopes: tuple[s.Scope, ...], forbids: tuple[s.Forbid, ...]
) -> tuple[Any, ...]:
    """Every request path the definition reads (items, amounts, scopes, forbids)."""
    out = [jp for sc in scopes for jp in sc.paths] + [jp for f in forbids for jp in f.paths]
    for e in endpoints:
        out += [*(e.items.paths if e.items else ()), *((e.amount.path,) if e.amount else ())]
    return tuple(out)


def _check_header_options(credential: s.Credential, vault_key: s.VaultKey, request: s.RequestRules) -> None:
    """One rule for every header option: it differs from the credential's and the vault key's
    header (those carry secrets: an option naming one would forward, record or refuse a secret),
    and a refused header is none the definition takes or forwards."""
    secret = {credential.header: "the credential's header", vault_key.header: "the vault key's header"}
    secret.pop(None, None)
    for where, h in header_options(request):
        if h in secret:
            raise Bad(where, f"{h!r} is {secret[h]}: a header option must name another header")
    taken = {request.idempotency_header, request.request_id_header} | request.forward_headers
    refused = sorted(request.refuse_headers & taken)
    if refused:
        raise Bad("request.refuse_headers", f"{refused[0]!r} is also a header this definition takes or forwards")
    if request.idempotency_header in request.forward_headers:
        raise Bad("request.forward_headers", f"{request.idempotency_header!r} is the idempotency header")


def _credential(v: Any, where: str) -> s.Credential:
    t = Table(v, where)
    fields = t.get("fields", p.strings, None)
    prefix = t.get("prefix", p.text, None)
    inject = t.need("inject", p.one_of(s.INJECT))
    header = t.get("header", p.header, None)
    query = t.get("query", p.text, None)
    username = t.get("username", p.template, None)
    password = t.get("password", p.template, None)
    value = t.get("value", p.template, None)
    t.done()
    if fields is not None:
        if not fields:
            raise Bad(t.at("fields"), "must list at least one field")
        if prefix is not None:
            raise Bad(t.at("prefix"), "applies to a one-string secret only (no fields)")
    for key, needed in (("header", "header"), ("query", "query")):
        given = header if key == "header" else query
        if (inject == needed) != (given is not None):
            raise Bad(t.at(key), f"is required with inject = {needed!r} and not allowed otherwise")
    if inject == "basic":
        if username is None or password is None:
            raise Bad(where, "inject = 'basic' needs username and password templates")
        if value is not None:
            raise Bad(t.at("value"), "is not used with inject = 'basic' (use username and password)")
    elif username is not None or password is not None:
        raise Bad(t.at("username" if username is not None else "password"), "is used with inject = 'basic' only")
    known = {"secret"} if fields is None else set(fields)
    for key, tpl in (("username", username), ("password", password), ("value", value)):
        for placeholder in p.template_names(tpl or ""):
            if placeholder not in known:
                raise Bad(
                    t.at(key), f"{{{placeholder}}} is not one of {', '.join('{' + k + '}' for k in sorted(known))}"
                )
    default = "{secret}" if fields is None else "{" + fields[0] + "}"
    if inject != "basic" and value is None and fields is not None and len(fields) > 1:
        raise Bad(t.at("value"), "is required when the secret has several fields")
    return s.Credential(fields, prefix, inject, header, query, username or "", password or "", value or default)


def _vault_key(v: Any, where: str) -> s.VaultKey:
    t = Table(v, where)
    arrives = t.need("arrives", p.one_of(s.ARRIVES))
    header = t.get("header", p.header, None)
    body_field = t.get("body_field", p.member, None)
    t.done()
    if (arrives == "header") != (header is not None):
        raise Bad(t.at("header"), "is required with arrives = 'header' and not allowed otherwise")
    return s.VaultKey(arrives, header, body_field)


def _request(v: Any, where: str) -> s.RequestRules:
    t = Table(v, where)
    bodies = t.get("bodies", p.strings, ("json",))
    if not bodies:
        raise Bad(t.at("bodies"), "must list json, form or both")
    for i, b in enumerate(bodies):
        p.one_of(s.BODIES)(b, f"{t.at('bodies')}[{i}]")
    json_keys = t.get("json_keys", p.one_of(s.JSON_KEYS), "exact")
    idem = t.get("idempotency_header", p.header, None)
    rid = t.get("request_id_header", p.header, None)
    forward = t.get("forward_headers", p.strings, ())
    refuse = t.get("refuse_headers", p.strings, ())
    slash = t.get("trailing_slash", p.flag, False)
    path_chars = t.get("path_characters", p.text, "")
    t.done()
    odd = sorted(set(path_chars) - set("!$&'()*,;=:"))
    if odd:
        raise Bad(t.at("path_characters"), f"{odd[0]!r} cannot be allowed: only !$&'()*,;=: are (RFC 3986 sub-delims)")
    for key, names in (("forward_headers", forward), ("refuse_headers", refuse)):
        for i, h in enumerate(names):
            if p.header(h, f"{t.at(key)}[{i}]") != h:
                raise Bad(f"{t.at(key)}[{i}]", "header names here are lower-case")
    return s.RequestRules(
        frozenset(bodies), json_keys, idem, rid, frozenset(forward), frozenset(refuse), slash, path_chars
    )


def _error(v: Any, where: str) -> s.ErrorShape:
    t = Table(v, where)
    body = t.need("body", lambda b, w: b)
    ctype = t.get("content_type", p.text, "application/json")
    t.done()
    media = ctype.split(";")[0].strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        raise Bad(t.at("content_type"), "the body is sent as JSON: application/json or application/<…>+json")
    if any(ch in ctype for ch in "\r\n"):
        raise Bad(t.at("content_type"), "must be one line")
    if not _mentions(body, "{code}") or not _mentions(body, "{message}"):
        raise Bad(t.at("body"), "must carry {code} and {message} somewhere (SDKs read them)")
    return s.ErrorShape(body, ctype)


def _mentions(node: Any, placeholder: str) -> bool:
    if isinstance(node, str):
        return placeholder in node
    if isinstance(node, dict):
        return any(_mentions(x, placeholder) for x in node.values())
    if isinstance(node, list):
        return any(_mentions(x, placeholder) for x in node)
    return False


def _answer(v: Any, where: str) -> tuple[Any, ...]:
    t = Table(v, where)
    redact = t.get("redact", p.paths, ())
    t.done()
    return redact


def _endpoints(v: Any, where: str) -> tuple[s.Endpoint, ...]:
    if not isinstance(v, list):
        raise Bad(where, "must be an array of tables ([[endpoint]])")
    out = tuple(_endpoint(e, f"endpoint[{i}]", i) for i, e in enumerate(v))
    seen: dict[str, int] = {}
    for e in out:
        if e.match.text in seen:
            raise Bad(f"endpoint[{e.index}].match", f"{e.match.text!r} is also endpoint[{seen[e.match.text]}]")
        seen[e.match.text] = e.index
    for later in out:  # first match wins: an endpoint an earlier one covers would never be used
        for earlier in out[: later.index]:
            hit = shadows(earlier.match, later.match)
            if hit is not None:
                raise Bad(
                    f"endpoint[{later.index}].match",
                    f"{later.match.text!r} is never reached for {hit[0]} /{'/'.join(hit[1])}: endpoint[{earlier.index}]"
                    f" {earlier.match.text!r} matches it first (put specific endpoints before wildcards)",
                )
    return out


_PRICE_KEYS = {
    "fixed": {"usd"},
    "per_item": {"usd", "items"},
    "amount": {"amount"},
    "free": set(),
    "unpriceable": set(),
}


def _endpoint(v: Any, where: str, index: int) -> s.Endpoint:
    t = Table(v, where)
    match = t.need("match", p.pattern)
    pricing = t.need("pricing", p.one_of(s.PRICING))
    usd = t.get("usd", p.usd, None)
    items = t.get("items", _items, None)
    amount = t.get("amount", p.money, None)
    sends = t.get("sends", _sends, None)
    settle = t.get("settle", p.money, None)
    guarded = t.get("guarded", p.flag, False)
    redact = t.get("redact", p.paths, ())
    tool = t.get("tool", lambda x, w: tool_decl(x, w, match, pricing), None)
    t.done()
    given = {k for k, val in (("usd", usd), ("items", items), ("amount", amount)) if val is not None}
    wanted = _PRICE_KEYS[pricing]
    if given != wanted:
        key = sorted(given ^ wanted)[0]
        needed = "is required" if key in wanted else "is not used"
        raise Bad(f"{where}.{key}", f"{needed} with pricing = {pricing!r}")
    if sends == "items" and items is None:
        raise Bad(f"{where}.sends", "'items' needs pricing = 'per_item' (or give a whole number)")
    if settle is not None and pricing in ("free", "unpriceable"):
        raise Bad(f"{where}.settle", f"is not used with pricing = {pricing!r}")
    return s.Endpoint(index, match, pricing, usd, items, amount, sends, settle, guarded, redact, tool)


def _items(v: Any, where: str) -> s.Items:
    t = Table(v, where)
    count = t.need("count", p.one_of(s.COUNTS))
    paths = t.need("paths", p.paths)
    field = t.get("address_field", p.text, None)
    t.done()
    if not paths:
        raise Bad(t.at("paths"), "must list at least one path")
    if field is not None and count != "addresses":
        raise Bad(t.at("address_field"), "is used with count = 'addresses' only")
    return s.Items(count, paths, field or "email")


def _sends(v: Any, where: str) -> str | int:
    if v == "items":
        return "items"
    return p.positive_int(0, 10_000)(v, where)


def _scopes(v: Any, where: str) -> tuple[s.Scope, ...]:
    if not isinstance(v, list):
        raise Bad(where, "must be an array of tables ([[scope]])")
    out: list[s.Scope] = []
    for i, item in enumerate(v):
        here = f"scope[{i}]"
        t = Table(item, here)
        field = t.need("field", p.policy_field)
        match = t.need("match", p.one_of(s.MATCH_KINDS))
        paths = t.need("paths", p.paths)
        endpoints = t.get(
            "endpoints", lambda x, w: tuple(p.pattern(e, f"{w}[{j}]") for j, e in enumerate(p.strings(x, w))), None
        )
        required = t.get("required", p.flag, False)
        address_field = t.get("address_field", p.text, None)
        t.done()
        if not paths:
            raise Bad(t.at("paths"), "must list at least one path")
        if endpoints == ():
            raise Bad(t.at("endpoints"), "must list at least one endpoint (omit it for every endpoint)")
        if address_field is not None and match != "email_domain":
            raise Bad(t.at("address_field"), "is used with match = 'email_domain' only")
        if any(o.field == field and o.match != match for o in out):
            raise Bad(t.at("match"), f"{field!r} is declared again with another match kind")
        out.append(s.Scope(field, match, paths, endpoints, required, address_field or "email"))
    return tuple(out)


def _forbids(v: Any, where: str) -> tuple[s.Forbid, ...]:
    if not isinstance(v, list):
        raise Bad(where, "must be an array of tables ([[forbid]])")
    out: list[s.Forbid] = []
    for i, item in enumerate(v):
        t = Table(item, f"forbid[{i}]")
        paths = t.need("paths", p.paths)
        values = t.need("values", p.strings)
        endpoints = t.get("endpoints", _patterns, None)
        why = t.get("why", p.text, None)
        t.done()
        if not paths or not values:
            raise Bad(t.at("paths" if not paths else "values"), "must list at least one entry")
        for j, value in enumerate(values):
            if "*" in value[:-1] or not fold(value.rstrip("*")):
                raise Bad(f"{t.at('values')}[{j}]", "a value is text, with '*' only at its end (a prefix)")
        out.append(s.Forbid(paths, tuple(fold(x) for x in values), endpoints, why))
    return tuple(out)


def _patterns(v: Any, where: str) -> tuple[Any, ...]:
    out = tuple(p.pattern(e, f"{where}[{j}]") for j, e in enumerate(p.strings(v, where)))
    if not out:
        raise Bad(where, "must list at least one endpoint (omit it for every endpoint)")
    return out
