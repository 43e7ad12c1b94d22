"""`GET /_keybrake/self` on the proxy listener: what a vault key may know about itself."""

from __future__ import annotations

from typing import Any

from keybrake import deadline
from keybrake.admin.keys import render as render_key
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.core.jsonfmt import dumps
from keybrake.core.request import ProxyRequest
from keybrake.proxy.auth import extract_token
from keybrake.proxy.decisions import state_denial
from keybrake.proxy.keys import key_state
from keybrake.proxy.render import JSON_TYPE, ProxyResponse, denial_response
from keybrake.runtime import Runtime
from keybrake.store.base import KeyRecord, KeyState
from keybrake.tokens import token_hash

_FIELDS = ("id", "object", "vendor", "label", "status", "expires_at", "usage")


async def self_view(rt: Runtime, scope: dict[str, Any]) -> ProxyResponse:
    """The calling vault key's own id, expiry, endpoints and usage: 200 JSON, `cache-control: no-store`.

    No metadata and no credential. SDK helpers use it to learn the key id (Twilio's path). An
    unknown, revoked or expired key gets the proxy's denial (401/403 `key_*`); a store that does
    not answer, 503 `enforcement_unavailable`. Bounded like a proxied request's store call, in
    the capped class of unauthenticated lookups (`deadline.LOOKUP`).
    """
    headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])
    req = ProxyRequest("GET", b"/_keybrake/self", b"", headers, b"", "")
    now = rt.store.now_ms()
    deadline.start(rt.settings.reserve_deadline_ms / 1000, kind=deadline.LOOKUP)
    try:
        key = await _usable_key(rt, req)
        full = await render_key(rt, key)
    except Denial as denial:
        return denial_response(denial, None, request_id=None, key_id=None, now_ms=now)
    except EnforcementUnavailable:
        down = Denial("enforcement_unavailable", "Keybrake cannot reach its store. Retry shortly.")
        return denial_response(down, None, request_id=None, key_id=None, now_ms=now)
    view = {k: full[k] for k in _FIELDS}
    view["allowed_endpoints"] = full["policy"]["allowed_endpoints"]
    return ProxyResponse(200, [("content-type", JSON_TYPE), ("cache-control", "no-store")], dumps(view))


async def _usable_key(rt: Runtime, req: ProxyRequest) -> KeyRecord:
    """The request's vault key if it is known, not revoked and not expired; raises that Denial.

    The key's state is the proxy's own check (`proxy.keys.key_state`, run on every proxied request).
    """
    key = await rt.store.key_by_hash(token_hash(rt.pepper, extract_token(req)))
    if key is None:
        raise Denial("key_invalid", "Unknown vault key.")
    state = await key_state(key, rt.store)
    if state is not KeyState.OK:
        raise state_denial(state, key)  # a proxied call's own words, the revoke's reason included
    return key
