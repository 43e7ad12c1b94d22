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
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

from keybrake.core.destinations import check_phone_prefix, country_of, mask_phone, normalise_phone
from keybrake.core.errors import Denial, twilio_code
from keybrake.core.money import MICRO
from keybrake.core.params import check_spelling, fold, parse_form, query_params
from keybrake.core.paths import join
from keybrake.core.patterns import EndpointPattern, parse_pattern
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors import twilio_paths, twilio_voice
from keybrake.vendors.base import (
    Estimate,
    Rates,
    Rendered,
    ScopeResult,
    ValidatedSecret,
    VendorCost,
    VendorDefaults,
    VendorRequest,
    answer_text,
    check_path_spelling,
    content_type,
    keybrake_code_doc,
    redact_fields,
    retry_after,
)
from keybrake.vendors.rates import DEFAULT_TWILIO_RATES, TwilioRates, load_twilio_rates
from keybrake.vendors.registry import VendorSetting, VendorSpec
from keybrake.vendors.sms import segments

API = "2010-04-01"
# The largest price Keybrake believes for one message or call, in the price's unit; anything
# beyond it (or not a finite decimal) is treated as no price, so the estimate stands.
MAX_PRICE = Decimal(100_000)
# A message is at most 1,600 characters: even as UCS-2 that is 24 segments. Counts beyond this
# bound in an answer are not believed.
MAX_SEGMENTS = 1600
DEFAULT_MAX_CALL_SECONDS = 600
# Content templates (ContentSid without Body) are at most 1,600 characters: bound them as UCS-2.
TEMPLATE_SEGMENTS = math.ceil(1600 / 67)

# Form parameters Twilio's spec types as arrays: sent as repeated keys (`MediaUrl=a&MediaUrl=b`).
REPEATABLE = frozenset(
    {
        "MediaUrl",
        "StatusCallbackEvent",
        "RecordingStatusCallbackEvent",
        "ConferenceStatusCallbackEvent",
        "ConferenceRecordingStatusCallbackEvent",
        "PersistentAction",
        "Permissions",
    }
)
# Parameters Keybrake's pricing, scope or policy reads. Twilio has no bracket syntax and its
# names are case-sensitive: `To[]`, `to` or ` To` next to (or instead of) `To` are refused.
ENFORCED = frozenset(
    {
        "To",
        "From",
        "Body",
        "MediaUrl",
        "ContentSid",
        "ContentVariables",
        "TimeLimit",
        "Twiml",
        "Url",
        "FallbackUrl",
        "ApplicationSid",
        *twilio_voice.PARAMS,
    }
)


def _p(text: str, *, casefold: bool = False) -> EndpointPattern:
    return parse_pattern(text, casefold=casefold)


MESSAGES_CREATE = _p(f"POST /{API}/Accounts/*/Messages.json")
CALLS_CREATE = _p(f"POST /{API}/Accounts/*/Calls.json")
PARTICIPANTS_CREATE = _p(f"POST /{API}/Accounts/*/Conferences/*/Participants.json")
# Endpoints whose exact spelling decides a price or a destination check: after the extension is
# mapped to `.json`, a case variant of one of them is refused (`base.check_path_spelling`).
MONEY_MOVING = (MESSAGES_CREATE, CALLS_CREATE, PARTICIPANTS_CREATE, *twilio_voice.PATTERNS)
# Endpoints that move no money. Everything else not priced above is unpriceable — including a
# live call's update, which can redirect it to new TwiML that dials anyone.
FREE = tuple(
    _p(t)
    for t in (
        "GET /**",
        f"POST /{API}/Accounts/*/Messages/*.json",  # redact a body or cancel a scheduled message
        f"DELETE /{API}/Accounts/*/Calls/*.json",
        f"DELETE /{API}/Accounts/*/Recordings/*.json",
        f"DELETE /{API}/Accounts/*/Calls/*/Recordings/*.json",
        f"DELETE /{API}/Accounts/*/Messages/*/Media/*.json",
        f"DELETE /{API}/Accounts/*/Transcriptions/*.json",
        # Guarded (docs/policy.md, guarded endpoints), but they move no money once a key may call them at all.
        f"* /{API}/Accounts/*/Keys.json",
        f"* /{API}/Accounts/*/Keys/*",
        f"* /{API}/Accounts/*/SigningKeys.json",
        f"* /{API}/Accounts/*/SigningKeys/*",
        f"POST /{API}/Accounts/*/Applications.json",
        f"POST|DELETE /{API}/Accounts/*/Applications/*.json",
    )
)
# docs/policy.md, guarded endpoints: endpoints that return or mint secrets, buy numbers or change the account.
GUARDED = tuple(
    _p(t, casefold=True)
    for t in (
        f"* /{API}/Accounts.json",
        f"* /{API}/Accounts/*.json",
        f"* /{API}/Accounts/*/Keys.json",
        f"* /{API}/Accounts/*/Keys/*",
        f"* /{API}/Accounts/*/SigningKeys.json",
        f"* /{API}/Accounts/*/SigningKeys/*",
        f"POST /{API}/Accounts/*/IncomingPhoneNumbers*",
        f"POST|DELETE /{API}/Accounts/*/IncomingPhoneNumbers/**",
        f"POST /{API}/Accounts/*/Applications*",
        f"POST /{API}/Accounts/*/Applications/**",
        f"* /{API}/Accounts/*/SIP/**",
        f"DELETE /{API}/Accounts/*/Messages/*",
    )
)

_ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
_AUTH_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_API_KEY_SID = re.compile(r"^SK[0-9a-f]{32}$")
_API_KEY_SECRET = re.compile(r"^[A-Za-z0-9]{32}$")
_OBJECT_SID = re.compile(r"^(SM|MM|CA)[0-9a-f]{32}$")
_NO_CHARGE_STATUSES = frozenset({"canceled", "busy", "no-answer"})
_SECRET_FIELDS = frozenset({"auth_token", "secret"})


class Twilio(VendorDefaults):
    name = "twilio"
    default_base_url = "https://api.twilio.com"
    # api.twilio.com or a regional edge such as api.dublin.ie1.twilio.com (docs/operations.md, upstream hosts)
    upstream_hosts: tuple[str, ...] = ("api.twilio.com", "api.*.twilio.com")
    forwarded_headers = frozenset({"accept-charset", "x-twilio-client"})
    policy_fields = frozenset(
        {
            "daily_usd_cap",
            "total_usd_cap",
            "max_usd_per_call",
            "max_requests_per_hour",
            "allowed_endpoints",
            "param_rules",
            "allowed_to_prefixes",
            "default_calling_code",
            "max_call_seconds",
            "allowed_twiml_urls",
            "allowed_application_sids",
            "daily_send_cap",
            "dedup_window_seconds",
        }
    )
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
        check_path_spelling(method, path, self.money_moving, self.free, guarded=self.guarded)
        twilio_paths.check_documented(method, path)
        return path

    def pattern_problem(self, pattern: EndpointPattern) -> str | None:
        return twilio_paths.pattern_problem(pattern)

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
        limit = vreq.extra.get("set_time_limit")
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
        vreq = VendorRequest(req.method, path, params)
        kind = _destination_kind(req.method, path)
        vreq.extra["kind"] = kind
        if path and path[0] == API:
            # The representation asked for: only a JSON answer can be priced and redacted.
            vreq.extra["format"] = twilio_paths.request_format(req.raw_path)
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
            vreq.extra.update(segments=count, num_media=len(media))
        return vreq

    @staticmethod
    def _destination_endpoint(vreq: VendorRequest) -> str | None:
        """The destination kind ("message", "call" or None), decided once in the parse."""
        kind = vreq.extra.get("kind")
        return kind if isinstance(kind, str) else None

    # -- scope ----------------------------------------------------------------------------

    def check_scope(self, policy: Policy, vreq: VendorRequest) -> ScopeResult:
        fmt = vreq.extra.get("format", "json")
        if fmt != "json" and any(p.matches(vreq.method, vreq.path) for p in twilio_paths.SECRET_ANSWERS):
            raise Denial(
                "path_invalid",
                f"Request path refused: answers of {join(vreq.path)} carry secrets (auth_token, secret) that Keybrake "
                f"removes from JSON answers only; request the .json spelling, not .{fmt}. Nothing was sent.",
            )
        dials = twilio_voice.check_call_control(policy, vreq.method, vreq.path, vreq.params)
        if twilio_voice.CALLS_UPDATE.matches(vreq.method, vreq.path):
            # A live call's TimeLimit can be raised by an update: no further than a new call's.
            cap = policy.max_call_seconds or DEFAULT_MAX_CALL_SECONDS
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
        kind = self._destination_endpoint(vreq)
        if kind is None:
            return ScopeResult(extra={"dials": dials} if dials else {})
        raw_to = vreq.params.scalar("To") or ""
        channels = [p for p in policy.allowed_to_prefixes or () if p.endswith(":")]
        to = normalise_phone(raw_to, default_calling_code=policy.default_calling_code, channels=channels)
        if to.startswith("+"):
            check_phone_prefix(to, policy.allowed_to_prefixes)
        extra: dict[str, Any] = {"to": to, "whatsapp": raw_to.strip().lower().startswith("whatsapp:")}
        if dials:
            extra["dials"] = dials
        if kind == "call":
            cap = policy.max_call_seconds or DEFAULT_MAX_CALL_SECONDS
            given = vreq.params.scalar("TimeLimit")
            if given is not None and not (given.isascii() and given.isdigit()):
                raise Denial("body_invalid", "Parameter 'TimeLimit' must be a whole number of seconds.")
            limit = min(int(given), cap) if given is not None else cap
            extra["time_limit"] = limit
            if given is None or int(given) > cap:
                extra["set_time_limit"] = limit
        return ScopeResult(extra=extra)

    # -- cost -----------------------------------------------------------------------------

    def estimate(self, vreq: VendorRequest, rates: Rates) -> Estimate:
        kind = self._destination_endpoint(vreq)
        to = vreq.extra.get("to")
        country = country_of(to) if isinstance(to, str) else None
        if kind == "message":
            if vreq.extra.get("num_media"):
                return Estimate("priced", _micro(self.rates.rate("mms", country)), "mms", "usd", sends=1)
            table = "whatsapp" if vreq.extra.get("whatsapp") else "sms"
            per_segment = self.rates.rate(table, country)
            return Estimate("priced", _micro(per_segment * int(vreq.extra["segments"])), "sms", "usd", sends=1)
        if kind == "call":
            minutes = math.ceil(int(vreq.extra["time_limit"]) / 60)
            per_minute = self.rates.rate("call_per_minute", country) + twilio_voice.child_leg_rate(
                vreq.method, vreq.path, vreq.params, self.rates
            )
            return Estimate("priced", _micro(per_minute * minutes), "call", "usd")
        if any(p.matches(vreq.method, vreq.path) for p in FREE):
            return Estimate("free", 0, "none")
        return Estimate("unpriceable", 0, "call" if "calls" in "/".join(vreq.path).lower() else "sms")

    def cost(
        self, vreq: VendorRequest, estimate: Estimate, status: int, headers: dict[str, str], doc: Any, rates: Rates
    ) -> VendorCost:
        if status >= 400:
            return VendorCost(0, "none", "none")  # Twilio refused it: nothing was sent
        sid = doc.get("sid") if isinstance(doc, dict) and isinstance(doc.get("sid"), str) else None
        if estimate.pricing == "free":
            return VendorCost(0, "none", "none", vendor_object_id=sid)
        if not isinstance(doc, dict):
            return VendorCost(estimate.amount, "estimate", estimate.cost_kind, vendor_object_id=sid)
        priced = self._price(doc, rates)
        if priced is not None and estimate.cost_kind != "call":
            # A call's own price leaves out the legs its TwiML dials: calls settle by reconciliation.
            return VendorCost(priced, "response", estimate.cost_kind, vendor_object_id=sid)
        amount = estimate.amount
        counted = _segments(doc.get("num_segments"))
        estimated = vreq.extra.get("segments")
        if counted and isinstance(estimated, int) and counted > estimated:  # 0 (Messaging Services) is ignored
            amount = math.ceil(amount * counted / estimated)
        # No price yet: the estimate stands until reconciliation reads the real one (§3.1.2).
        keep = sid is not None and _OBJECT_SID.match(sid) is not None
        return VendorCost(amount, "estimate", estimate.cost_kind, keep_reservation=keep, vendor_object_id=sid)

    @staticmethod
    def _price(doc: dict[str, Any], rates: Rates) -> int | None:
        """|price| in USD micro-dollars (half-up), or None while Twilio has not priced it."""
        price, unit = doc.get("price"), doc.get("price_unit")
        if price is None or not isinstance(price, str | int | float):
            return None
        try:
            value = abs(Decimal(str(price)))
        except InvalidOperation:
            return None
        rate = rates.get(str(unit or "usd").lower())
        if rate is None or not value.is_finite() or value > MAX_PRICE:
            return None  # validated before arithmetic: an absurd price leaves the estimate standing
        return int((value * Decimal(rate) * MICRO).to_integral_value(rounding="ROUND_HALF_UP"))

    def reconcile(self, doc: Any, rates: Rates, related: Sequence[Any] = ()) -> VendorCost | None:
        """The final price of a Message or Call, or None while Twilio has not priced all of it.

        A call's price is its own leg plus every child call its TwiML dialled (`related`: pages
        of `Calls.json?ParentCallSid=…`, Twilio's documented filter); it is final once each has
        a price or ended without a charge.
        """
        if not isinstance(doc, dict):
            return None
        sid = doc.get("sid") if isinstance(doc.get("sid"), str) else None
        kind = "call" if (sid or "").startswith("CA") else ("mms" if (sid or "").startswith("MM") else "sms")
        total = 0
        for leg in [doc, *(c for page in related for c in _calls_of(page))]:
            priced = self._price(leg, rates)
            if priced is None and answer_text(leg, "status") not in _NO_CHARGE_STATUSES:
                return None
            total += priced or 0
        if total == 0 and answer_text(doc, "status") in _NO_CHARGE_STATUSES:
            return VendorCost(0, "response", "none", vendor_object_id=sid)
        return VendorCost(total, "response", kind, vendor_object_id=sid)

    def related_lookups(self, object_id: str, secret: bytes) -> list[str]:
        """A call's child legs (what its `<Dial>`s rang), read with the parent at reconciliation."""
        if not object_id.startswith("CA") or not _OBJECT_SID.match(object_id):
            return []
        account = self._secret(secret)["account_sid"]
        return [f"/{API}/Accounts/{account}/Calls.json?ParentCallSid={object_id}&PageSize=1000"]

    # -- objects --------------------------------------------------------------------------

    def lookup(
        self, object_id: str, account_context: str | None, secret: bytes
    ) -> tuple[str, list[tuple[str, str]]] | None:
        if not _OBJECT_SID.match(object_id):
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
        if self._destination_endpoint(vreq) is not None:
            h.update(str(vreq.extra.get("to") or vreq.params.scalar("To")).encode())
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
        out: dict[str, Any] = {}
        to = vreq.extra.get("to")
        if isinstance(to, str):
            out["destination"] = mask_phone(to)
        for name in ("segments", "num_media", "time_limit", "dials"):
            if name in vreq.extra:
                out[name] = vreq.extra[name]
        if vreq.extra.get("format", "json") != "json":
            out["format"] = vreq.extra["format"]  # not JSON: the cost stays at the estimate
        return out

    # -- errors ---------------------------------------------------------------------------

    def render_denial(self, denial: Denial, keybrake: dict[str, Any]) -> Rendered:
        return Rendered(
            {
                "code": twilio_code(denial.code),
                "message": denial.message,
                "more_info": keybrake_code_doc(denial.code),
                "status": denial.status,
                "details": {"keybrake_code": denial.code, **keybrake},
            },
            retry_after(denial),
        )


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


def _calls_of(page: Any) -> list[dict[str, Any]]:
    calls = page.get("calls") if isinstance(page, dict) else None
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _micro(usd: Decimal) -> int:
    """Round up to the next micro-dollar: estimates are upper bounds."""
    return int((usd * MICRO).to_integral_value(rounding="ROUND_CEILING"))


def _segments(v: Any) -> int | None:
    """A `num_segments` from an answer, validated before arithmetic: a whole number (Twilio sends a
    decimal string) up to MAX_SEGMENTS, else None (a float, infinity or an absurd count is ignored)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 4:
        v = int(v)
    return v if isinstance(v, int) and 0 <= v <= MAX_SEGMENTS else None


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
)
