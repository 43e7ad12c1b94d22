"""Twilio (REST API 2010-04-01): Basic-auth and Account SID swap, per-destination estimates,
prices settled from the answer or reconciled later, phone destination scope.

The agent authenticates with HTTP Basic, the vault key as the password; the Account SID in the
path is the key's own id (`vk_…`) or the credential's real SID, and both are replaced with the
credential's (docs/sdk-twilio.md). Twilio answers `price: null` when a message or call is created,
so the estimate stands (`cost_source=estimate`) until reconciliation reads the real price.
Keybrake never sets or relies on `MaxPrice` (obsolete at Twilio since 2024-06-03).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

from keybrake.core.destinations import check_phone_prefix, mask_phone, normalise_phone
from keybrake.core.errors import Denial
from keybrake.core.names import check_spelling, fold
from keybrake.core.params import parse_form, query_params
from keybrake.core.paths import join
from keybrake.core.patterns import EndpointPattern
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors import twilio_paths, twilio_pricing, twilio_voice
from keybrake.vendors.base import (
    CORE_POLICY_FIELDS,
    Estimate,
    Rates,
    Rendered,
    ScopeResult,
    ValidatedSecret,
    VendorCost,
    VendorDefaults,
    VendorRequest,
    content_type,
    redact_fields,
)
from keybrake.vendors.rates import DEFAULT_TWILIO_RATES, TwilioRates, load_twilio_rates
from keybrake.vendors.registry import VendorSetting, VendorSpec
from keybrake.vendors.sms import segments
from keybrake.vendors.twilio_endpoints import (
    CALLS_CREATE,
    ENFORCED,
    FREE,
    GUARDED,
    MESSAGES_CREATE,
    MONEY_MOVING,
    PARTICIPANTS_CREATE,
    REPEATABLE,
)
from keybrake.vendors.twilio_errors import twilio_denial
from keybrake.vendors.twilio_policy import TwilioPolicy, TwilioPolicyIn, policy_problem
from keybrake.vendors.twilio_pricing import NO_PARSE, NO_SCOPE, OBJECT_SID, TwilioParse, TwilioScope

API = "2010-04-01"
DEFAULT_MAX_CALL_SECONDS = 600
# Content templates (ContentSid without Body) are at most 1,600 characters: bound them as UCS-2.
TEMPLATE_SEGMENTS = math.ceil(1600 / 67)
__all__ = ["ENFORCED", "REPEATABLE", "SPEC", "Twilio"]

_ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
_AUTH_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_API_KEY_SID = re.compile(r"^SK[0-9a-f]{32}$")
_API_KEY_SECRET = re.compile(r"^[A-Za-z0-9]{32}$")
_SECRET_FIELDS = frozenset({"auth_token", "secret"})


class Twilio(VendorDefaults):
    name = "twilio"
    default_base_url = "https://api.twilio.com"
    # api.twilio.com or a regional edge such as api.dublin.ie1.twilio.com (docs/operations.md, upstream hosts)
    upstream_hosts: tuple[str, ...] = ("api.twilio.com", "api.*.twilio.com")
    forwarded_headers = frozenset({"accept-charset", "x-twilio-client"})
    policy_fields = CORE_POLICY_FIELDS | {
        "allowed_application_sids",
        "allowed_to_prefixes",
        "allowed_twiml_urls",
        "daily_send_cap",
        "default_calling_code",
        "max_call_seconds",
    }
    guarded = GUARDED
    money_moving = MONEY_MOVING
    free = FREE
    max_body_bytes = 1024 * 1024

    def __init__(self, rates: TwilioRates = DEFAULT_TWILIO_RATES, reconcile_interval_s: float = 60.0) -> None:
        self.rates = rates
        # Twilio answers `price: null` until a message is sent: its own reconciliation interval.
        self.reconcile_interval_s = reconcile_interval_s

    # -- spellings ------------------------------------------------------------------------

    def canonical(self, method: str, path: tuple[str, ...]) -> tuple[str, ...]:
        """`.xml`, no extension (and `.csv`/`.html` reads) map to the `.json` spelling (`twilio_paths`)."""
        path = twilio_paths.canonical(method, path)
        self.check_spelling(method, path)
        twilio_paths.check_documented(method, path)
        return path

    def pattern_problem(self, pattern: EndpointPattern) -> str | None:
        return twilio_paths.pattern_problem(pattern)

    def policy_problem(self, policy: Mapping[str, Any]) -> tuple[str, str] | None:
        return policy_problem(policy)

    # -- credentials ----------------------------------------------------------------------

    def validate_secret(self, secret: Any) -> ValidatedSecret:
        shape = (
            'a Twilio secret is {"account_sid": "AC…", "auth_token": "…"} or '
            '{"account_sid": "AC…", "api_key_sid": "SK…", "api_key_secret": "…"}'
        )
        if not isinstance(secret, dict) or not _ACCOUNT_SID.match(str(secret.get("account_sid", ""))):
            raise ValueError(shape)
        sid = secret["account_sid"]
        if set(secret) == {"account_sid", "auth_token"} and _AUTH_TOKEN.match(str(secret["auth_token"])):
            hint = f"{sid[:4]}…{sid[-4:]} token …{secret['auth_token'][-4:]}"
        elif (
            set(secret) == {"account_sid", "api_key_sid", "api_key_secret"}
            and _API_KEY_SID.match(str(secret["api_key_sid"]))
            and _API_KEY_SECRET.match(str(secret["api_key_secret"]))
        ):
            hint = f"{sid[:4]}…{sid[-4:]} key {secret['api_key_sid'][:4]}…{secret['api_key_sid'][-4:]}"
        else:
            raise ValueError(shape)
        return ValidatedSecret(json.dumps(secret, sort_keys=True).encode(), hint, None)

    @staticmethod
    def _secret(secret: bytes) -> Mapping[str, str]:
        return _parsed_secret(secret)

    def upstream_headers(self, secret: bytes) -> list[tuple[str, str]]:
        s = self._secret(secret)
        user = s.get("api_key_sid") or s["account_sid"]
        password = s.get("api_key_secret") or s["auth_token"]
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return [("authorization", f"Basic {token}")]

    def upstream_path(self, vreq: VendorRequest, raw_path: bytes, secret: bytes, key_id: str) -> bytes:
        """Swap the Account SID in `/2010-04-01/Accounts/{sid}[.ext]/…` for the credential's real one.

        The rest of the path is the agent's own spelling (`.xml` stays `.xml`).
        """
        path = vreq.path
        if len(path) < 3 or path[0] != API or path[1] != "Accounts":
            return raw_path
        real = self._secret(secret)["account_sid"]
        parts = raw_path.split(b"/")
        named, fmt = twilio_paths.account_segment(parts[3])
        suffix = f".{fmt}" if fmt else ""
        if named not in (key_id, real):
            raise Denial(
                "scope_violation",
                f"The path names the Twilio account {named[:40]!r}; this key may only use its own id ({key_id}) or "
                "its credential's account. Nothing was sent. Do not retry.",
            )
        parts[3] = (real + suffix).encode()
        return b"/".join(parts)

    def upstream_body(self, vreq: VendorRequest, body: bytes) -> bytes:
        """Calls get the policy's TimeLimit when theirs is absent or larger (nothing else is re-encoded)."""
        limit = _scope(vreq).set_time_limit
        if limit is None:
            return body
        pairs = [p for p in body.split(b"&") if p and unquote_plus(p.split(b"=", 1)[0].decode()) != "TimeLimit"]
        pairs.append(b"TimeLimit=%d" % limit)
        return b"&".join(pairs)

    def request_id(self, headers: dict[str, str]) -> str | None:
        return headers.get("twilio-request-id")

    # -- the one parse --------------------------------------------------------------------

    def parse(self, req: ProxyRequest, path: tuple[str, ...]) -> VendorRequest:
        ctype = content_type(req)
        if req.body and ctype != "application/x-www-form-urlencoded":
            raise Denial(
                "unsupported_media_type",
                f"Twilio request bodies must be application/x-www-form-urlencoded (got {ctype or 'no Content-Type'}).",
            )
        # Literal names, as Twilio reads them (no bracket syntax); repeats only for REPEATABLE.
        params = parse_form(req.query, req.body, repeatable=REPEATABLE, brackets=False)
        spelled: dict[str, str] = {}
        for raw in params.values:
            folded = fold(raw)
            if folded in spelled:
                raise Denial("param_ambiguous", f"Parameters {spelled[folded]!r} and {raw[:60]!r} differ only in case.")
            spelled[folded] = raw
        check_spelling(params.values, ENFORCED, vendor="Twilio", literal=True)
        kind = _destination_kind(req.method, path)
        # The representation asked for: only a JSON answer can be priced and redacted.
        fmt = twilio_paths.request_format(req.raw_path) if path and path[0] == API else "json"
        if kind is not None:
            if not params.scalar("To"):
                raise Denial("body_invalid", "Parameter 'To' is required (the destination, in E.164 form).")
            if req.query and "TimeLimit" in query_params(req.query, repeatable=REPEATABLE, brackets=False).values:
                raise Denial("body_invalid", "Send TimeLimit in the request body, not the query string.")
        if kind == "message":
            body = params.scalar("Body")
            media = params.values.get("MediaUrl", ())
            if not body and not media and not params.scalar("ContentSid"):
                raise Denial("body_invalid", "A message needs a Body, a MediaUrl or a ContentSid.")
            count = segments(body) if body else (TEMPLATE_SEGMENTS if params.scalar("ContentSid") else 1)
            return VendorRequest(req.method, path, params, detail=TwilioParse(kind, fmt, count, len(media)))
        return VendorRequest(req.method, path, params, detail=TwilioParse(kind, fmt))

    # -- scope ----------------------------------------------------------------------------

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        fmt = _detail(vreq).format
        if fmt != "json" and any(p.matches(vreq.method, vreq.path) for p in twilio_paths.SECRET_ANSWERS):
            raise Denial(
                "path_invalid",
                f"Request path refused: answers of {join(vreq.path)} carry secrets (auth_token, secret) that Keybrake "
                f"removes from JSON answers only; request the .json spelling, not .{fmt}. Nothing was sent.",
            )
        own = policy.vendor_fields(TwilioPolicy.from_store)
        dials = twilio_voice.check_call_control(own, vreq.method, vreq.path, vreq.params)
        if twilio_voice.CALLS_UPDATE.matches(vreq.method, vreq.path):
            # A live call's TimeLimit can be raised by an update: no further than a new call's.
            cap = own.max_call_seconds or DEFAULT_MAX_CALL_SECONDS
            given = vreq.params.scalar("TimeLimit")
            if given is not None and (not (given.isascii() and given.isdigit()) or int(given) > cap):
                raise Denial(
                    "param_not_allowed",
                    f"Parameter 'TimeLimit' of a call update must be a whole number of seconds up to this key's "
                    f"max_call_seconds ({cap}). Do not retry with the same value.",
                )
        # param_rules name literal Twilio parameters: a look-alike of one (`Foo[]`, `foo`) is refused.
        rules = [r.name for r in policy.param_rules or ()]
        if rules:
            check_spelling(vreq.params.values, rules, vendor="Twilio", literal=True)
        kind = _detail(vreq).kind
        if kind is None:
            return ScopeResult(detail=TwilioScope(dials=dials) if dials else None)
        raw_to = vreq.params.scalar("To") or ""
        channels = [p for p in own.allowed_to_prefixes or () if p.endswith(":")]
        to = normalise_phone(raw_to, default_calling_code=own.default_calling_code, channels=channels)
        if to.startswith("+"):
            check_phone_prefix(to, own.allowed_to_prefixes)
        whatsapp = raw_to.strip().lower().startswith("whatsapp:")
        if kind != "call":
            return ScopeResult(detail=TwilioScope(to, whatsapp, dials))
        cap = own.max_call_seconds or DEFAULT_MAX_CALL_SECONDS
        given = vreq.params.scalar("TimeLimit")
        if given is not None and not (given.isascii() and given.isdigit()):
            raise Denial("body_invalid", "Parameter 'TimeLimit' must be a whole number of seconds.")
        limit = min(int(given), cap) if given is not None else cap
        set_limit = limit if given is None or int(given) > cap else None
        return ScopeResult(detail=TwilioScope(to, whatsapp, dials, limit, set_limit))

    # -- cost (twilio_pricing) ------------------------------------------------------------

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        return twilio_pricing.estimate(vreq, _detail(vreq), _scope(vreq), self.rates, FREE)

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        return twilio_pricing.cost(_detail(vreq), estimate, status, doc, rates)

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        return twilio_pricing.reconcile(doc, rates, related)

    def related_lookups(self, object_id: str, secret: bytes) -> list[str]:
        """A call's child legs (what its `<Dial>`s rang), read with the parent at reconciliation."""
        if not object_id.startswith("CA") or not OBJECT_SID.match(object_id):
            return []
        account = self._secret(secret)["account_sid"]
        return [f"/{API}/Accounts/{account}/Calls.json?ParentCallSid={object_id}&PageSize=1000"]

    # -- objects --------------------------------------------------------------------------

    def lookup(
        self, object_id: str, account_context: str | None, secret: bytes
    ) -> tuple[str, list[tuple[str, str]]] | None:
        if not OBJECT_SID.match(object_id):
            return None
        collection = "Calls" if object_id.startswith("CA") else "Messages"
        return f"/{API}/Accounts/{self._secret(secret)['account_sid']}/{collection}/{object_id}.json", []

    def fingerprint(self, vreq: VendorRequest) -> str | None:
        return None  # Twilio's 2010 API has no Idempotency-Key

    def dedup_fingerprint(self, vreq: VendorRequest) -> str | None:
        """Normalised `To` and a hash of Body, MediaUrl, ContentSid, ContentVariables (docs/sdk-stripe.md, retries)."""
        h = hashlib.sha256()
        # The account segment may be the key id or the real SID: both mean the same account.
        path = "/".join(s if i != 2 else "{account}" for i, s in enumerate(vreq.path))
        h.update(f"{vreq.method} /{path}\0".encode())
        if _detail(vreq).kind is not None:
            h.update(str(_scope(vreq).to or vreq.params.scalar("To")).encode())
            for name in ("Body", "MediaUrl", "ContentSid", "ContentVariables"):
                h.update(
                    b"\0" + name.encode() + b"=" + b"\1".join(v.encode() for v in vreq.params.values.get(name, ()))
                )
            return h.hexdigest()
        for name, values in sorted(vreq.params.values.items()):
            h.update(b"\0" + name.encode() + b"=" + b"\1".join(v.encode() for v in values))
        return h.hexdigest()

    def redact(self, vreq: VendorRequest, doc: Any) -> list[str]:
        """`auth_token` and `secret` never reach the agent, at any depth (docs/policy.md, guarded endpoints)."""
        return redact_fields(doc, _SECRET_FIELDS)

    def summary(self, vreq: VendorRequest) -> dict[str, Any]:
        detail, scope = _detail(vreq), _scope(vreq)
        out: dict[str, Any] = {}
        if scope.to is not None:
            out["destination"] = mask_phone(scope.to)
        for name, value in (
            ("segments", detail.segments),
            ("num_media", detail.num_media),
            ("time_limit", scope.time_limit),
            ("dials", scope.dials or None),
        ):
            if value is not None:
                out[name] = value
        if detail.format != "json":
            out["format"] = detail.format  # not JSON: the cost stays at the estimate
        return out

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        return twilio_denial(denial, keybrake)


@functools.lru_cache(maxsize=64)
def _parsed_secret(secret: bytes) -> Mapping[str, str]:
    """The credential JSON, parsed once per secret (read twice on every request: auth and path)."""
    return MappingProxyType(json.loads(secret))


def _destination_kind(method: str, path: tuple[str, ...]) -> str | None:
    if MESSAGES_CREATE.matches(method, path):
        return "message"
    if CALLS_CREATE.matches(method, path) or PARTICIPANTS_CREATE.matches(method, path):
        return "call"
    return None


def _detail(vreq: VendorRequest) -> TwilioParse:
    """The Twilio facts of the one parse (`Twilio.parse` sets them on every request it returns;
    a request built otherwise reads as one that names no destination)."""
    return vreq.detail if isinstance(vreq.detail, TwilioParse) else NO_PARSE


def _scope(vreq: VendorRequest) -> TwilioScope:
    """What `check_scope` decided for the request (nothing yet: an empty TwilioScope)."""
    return vreq.scope if isinstance(vreq.scope, TwilioScope) else NO_SCOPE


SPEC = VendorSpec(
    "twilio",
    lambda values: Twilio(values["rates"], values["reconcile_interval_s"]),
    (
        VendorSetting(
            "KEYBRAKE_TWILIO_RATES_FILE",
            "rates",
            "file",
            DEFAULT_TWILIO_RATES,
            load=lambda path: load_twilio_rates(Path(path)),
        ),
        VendorSetting("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "reconcile_interval_s", "number", 60.0, low=0.01),
    ),
    policy_input=TwilioPolicyIn,
)
