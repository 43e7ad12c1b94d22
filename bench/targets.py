"""What the bench sends and to whom: direct and proxied targets, the vault keys, the sanity
requests and the audit rows they leave."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from children import LOOPBACK_OPENER, SetupError, http_json
from measure import percentile

BODY = b"amount=100&currency=usd&customer=cus_bench"
TWILIO_BODY = b"To=%2B14155550100&From=%2B14155550199&Body=Your+order+has+shipped"
CONTENT_TYPE = "application/x-www-form-urlencoded"
SCENARIOS = ("stripe", "twilio")
TWILIO_PATH = "/2010-04-01/Accounts/{}/Messages.json"
# The bench key must never hit its cap: every proxied request reserves $1.
BENCH_POLICY = {"daily_usd_cap": 100_000_000, "max_requests_per_hour": 100_000_000}

# -- keybrake provisioning and checks -------------------------------------------------------------


# The direct path marks its requests so the fake upstream can tell them from forwarded ones.
DIRECT_MARK = ("X-Bench-Path", "direct")


@dataclass
class Target:
    name: str  # "direct" or "keybrake"
    url: str
    bearer: str  # the Bearer token, or "user:password" for HTTP Basic (basic=True)
    body: bytes = BODY
    ok_status: int = 200
    basic: bool = False
    vendor: str = "stripe"

    def headers(self) -> dict[str, str]:
        if self.basic:
            auth = "Basic " + base64.b64encode(self.bearer.encode()).decode()
        else:
            auth = f"Bearer {self.bearer}"
        h = {"Authorization": auth, "Content-Type": CONTENT_TYPE}
        if self.name == "direct":
            h[DIRECT_MARK[0]] = DIRECT_MARK[1]
        return h


def provision(
    kb_base: str, admin_token: str, upstream_base: str, secret: Any, vendor: str = "stripe"
) -> tuple[str, str]:
    """Store the upstream secret and issue a vault key; returns (vault key, key id)."""
    cred = {"vendor": vendor, "name": f"bench-{vendor}", "secret": secret, "base_url": upstream_base}
    status, out = http_json("POST", f"{kb_base}/v1/credentials", token=admin_token, body=cred)
    if status != 201:
        raise SetupError(f"POST /v1/credentials -> HTTP {status}: {out!r}")
    policy: dict[str, Any] = dict(BENCH_POLICY)
    if vendor == "twilio":  # a realistic Twilio key: destination scope and a (huge) send cap
        policy.update(allowed_to_prefixes=["+1"], daily_send_cap=100_000_000)
    key_req = {
        "vendor": vendor,
        "credential": f"bench-{vendor}",
        "label": f"bench:{vendor}:run-{secrets.token_hex(3)}",
        "expires_in": "1h",
        "policy": policy,
    }
    status, out = http_json("POST", f"{kb_base}/v1/keys", token=admin_token, body=key_req)
    if status != 201 or not isinstance(out, dict) or not str(out.get("key", "")):
        raise SetupError(f"POST /v1/keys -> HTTP {status}: {out!r}")
    return str(out["key"]), str(out.get("id", ""))


def sanity_check(target: Target) -> dict[str, Any]:
    """One request each way before measuring; the answer must be the vendor's success shape.

    Returns a short summary of the answer (status, object id, the vendor's request-id header)
    for the JSON results.
    """
    req = urllib.request.Request(target.url, data=target.body, method="POST", headers=target.headers())
    try:
        with LOOPBACK_OPENER.open(req, timeout=10.0) as resp:
            status, raw, headers = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, raw, headers = exc.code, exc.read(), exc.headers
    except (OSError, urllib.error.URLError) as exc:
        raise SetupError(f"{target.vendor}/{target.name}: POST {target.url} failed: {exc}") from None
    try:
        out: Any = json.loads(raw)
    except ValueError:
        out = raw[:500]
    if target.vendor == "twilio":
        ok = isinstance(out, dict) and str(out.get("sid", "")).startswith("SM") and out.get("status") == "queued"
        id_header = "Twilio-Request-Id"
    else:
        ok = isinstance(out, dict) and out.get("object") == "charge"
        id_header = "Request-Id"
    if status != target.ok_status or not ok:
        raise SetupError(
            f"{target.vendor}/{target.name}: POST {target.url} -> HTTP {status}: {out!r}"
            + ("" if target.name == "direct" else " (see the keybrake log and GET /v1/audit; --keep-tmp keeps the log)")
        )
    return {"status": status, "id": out.get("sid") or out.get("id"), id_header: headers.get(id_header)}


def audit_summary(kb_base: str, admin_token: str, key_id: str, max_pages: int = 500) -> dict[str, Any]:
    """The audit rows of one bench key, paging the admin API (bounded to max_pages * 1000 rows).

    Returns {"rows": n, "outcomes": {"verdict status/upstream_status error_code": n},
    "with_vendor_request_id": n, "overhead_ms_p50"/"_p99": Keybrake's own overhead figure,
    "first_problem": the first row that is not an allowed 2xx (or None)}.
    """
    rows, cursor = 0, None
    outcomes: Counter[str] = Counter()
    with_request_id = 0
    overheads: list[float] = []
    first_problem: dict[str, Any] | None = None
    for _ in range(max_pages):
        query = f"key_id={key_id}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, out = http_json("GET", f"{kb_base}/v1/audit?{query}", token=admin_token, timeout=30.0)
        if status != 200 or not isinstance(out, dict):
            raise SetupError(f"GET /v1/audit -> HTTP {status}: {str(out)[:300]}")
        for row in out.get("data", []):
            rows += 1
            verdict, code = row.get("verdict"), row.get("error_code")
            outcome = f"{verdict} {row.get('status')}/{row.get('upstream_status')}" + (f" {code}" if code else "")
            outcomes[outcome] += 1
            if row.get("vendor_request_id"):
                with_request_id += 1
            if isinstance(row.get("overhead_ms"), int | float):
                overheads.append(float(row["overhead_ms"]))
            upstream = row.get("upstream_status")
            if first_problem is None and (code or not (isinstance(upstream, int) and 200 <= upstream < 300)):
                first_problem = {
                    k: row.get(k)
                    for k in ("ts", "method", "path", "verdict", "error_code", "reason", "status", "upstream_status")
                }
        cursor = out.get("next_cursor")
        if not cursor:
            overheads.sort()
            return {
                "rows": rows,
                "outcomes": dict(outcomes.most_common()),
                "with_vendor_request_id": with_request_id,
                "overhead_ms_p50": percentile(overheads, 50),
                "overhead_ms_p99": percentile(overheads, 99),
                "first_problem": first_problem,
            }
    raise SetupError(f"more than {max_pages * 1000} audit rows; stopped counting")
