"""Every admin input error is a 4xx in the admin error shape: a generated test.

Hypothesis puts random JSON values (wrong types, huge numbers, nested objects, nulls, unicode,
lone surrogates) into every field of every admin endpoint's body — keys, key PATCHes, revokes,
bulk revokes, budgets and their PATCHes, credentials and rotations, alerts — and random text
into every query parameter and path parameter, against a real server. No answer may be a 5xx,
and every 4xx carries `{"error": {"type": "keybrake_error", "code", "message", "field"}}`.
Issue example (f): `POST /v1/budgets` with `"timezone": 5` answered 500.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.admin.audit import encode_cursor
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, REAL_SECRET, KeybrakeThread, examples

SPECIAL_STRINGS = [
    "", " ", "\x00", "\ud800", "🔥", "UTC", "America/New_York", "../../etc/passwd", "1e309", "-1", "NaN",
    "Infinity", "9" * 400, "a" * 5000, "+1", "sk_test_x", "vault_key_x", "stripe", "POST /v1/charges",
    "*", "%", "2024-13-45T25:61:00Z", "0x10", "1.0000001", "1e-7", "true", "null", "{}", "[]",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([10**400, -(10**400), 2**63, 2**64, -(2**63) - 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e308, -0.0, 5e-324, 0.1234567891])
    | st.text(max_size=30)
    | st.sampled_from(SPECIAL_STRINGS)
)
KEYS = st.text(max_size=8) | st.sampled_from(SPECIAL_STRINGS)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=8,
)
TEXT = st.text(max_size=40) | st.sampled_from(SPECIAL_STRINGS)

POLICY = {
    "daily_usd_cap": 5, "total_usd_cap": 50, "max_usd_per_call": 2, "max_requests_per_hour": 10,
    "max_requests_total": 100, "max_write_requests_total": 50, "allowed_endpoints": ["POST /v1/charges"],
    "customer_allowlist": ["cus_A"], "account_allowlist": ["acct_1"],
    "param_rules": {"currency": {"in": ["usd"], "not_in": ["eur"], "min": "1", "max": "10", "pattern": "^u",
                                 "required": True}},
    "allowed_to_prefixes": ["+1"], "allowed_to_domains": ["example.com"], "allowed_from_domains": ["example.com"],
    "default_calling_code": "+1", "max_call_seconds": 60, "daily_send_cap": 10, "dedup_window_seconds": 60,
    "allow_self_revoke": True,
}  # fmt: skip
KEY = {"vendor": "stripe", "credential": "default", "label": "fuzz:agent", "expires_in": 3600,
       "metadata": {"team": "a"}, "policy": POLICY}  # fmt: skip
BUDGET = {"name": "b", "scope": {"vendor": "stripe"}, "daily_usd_cap": 5, "monthly_usd_cap": 50,
          "total_usd_cap": 500, "daily_request_cap": 10, "timezone": "UTC"}  # fmt: skip
CREDENTIAL = {"vendor": "stripe", "name": "fuzzed", "secret": REAL_SECRET, "base_url": "https://api.stripe.com"}
ROTATE = {"secret": REAL_SECRET, "base_url": "https://api.stripe.com"}
ALERT = {"type": "webhook", "url": "https://example.com/hook", "events": ["key.revoked"], "thresholds": [50, 80],
         "anomaly_factor": 3.0}  # fmt: skip
BULK = {"label_prefix": "nobody-has-this-prefix", "vendor": "stripe", "credential": "default", "reason": "r",
        "all": False}  # fmt: skip


def _bytes_quoted(text: str) -> str:
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field path in a JSON document (dict keys and list indices), the root excluded."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out.extend(paths_of(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out.extend(paths_of(v, (*prefix, i)))
    return out


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """The base body with one field replaced, removed, or an unknown one added; or any JSON at all."""
    how = draw(st.sampled_from(["replace", "replace", "replace", "remove", "add", "whole"]))
    if how == "whole":
        return draw(JSON_VALUES)
    paths = paths_of(base)
    path = draw(st.sampled_from(paths))
    if how == "remove":
        copy = json.loads(json.dumps(base))
        node = copy
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]
        return copy
    if how == "add":
        parent = path[:-1]
        target = base
        for step in parent:
            target = target[step]
        if isinstance(target, dict):
            return replaced(base, (*parent, draw(TEXT)), draw(JSON_VALUES))
    return replaced(base, path, draw(JSON_VALUES))


class Admin:
    """One server with a key, a budget, an alert and credentials to aim PATCHes and DELETEs at."""

    def __init__(self, kb: KeybrakeThread) -> None:
        self.kb = kb
        self.http = httpx.Client(base_url=kb.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        self.key_id = kb.issue({"daily_usd_cap": 5})["id"]
        r = self.http.post("/v1/budgets", json=BUDGET)
        assert r.status_code == 201, r.text
        self.budget_id = r.json()["id"]
        r = self.http.post("/v1/alerts", json=ALERT)
        assert r.status_code == 201, r.text
        self.alert_id = r.json()["id"]
        self.statuses: Counter[int] = Counter()

    def send(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> None:
        content = None if body is None else json.dumps(body).encode()
        if params:
            # percent-encoded by hand, so lone surrogates and \x00 arrive as the bytes they are
            path += "?" + "&".join(f"{quote(k)}={_bytes_quoted(v)}" for k, v in params.items())
        r = self.http.request(method, path, content=content, headers={"content-type": "application/json"})
        self.statuses[r.status_code] += 1
        what = f"{method} {path} {params!r} {content[:300] if content else None!r}"
        if r.status_code >= 500:
            logged = [line for line in self.kb.logs.lines if "internal error" in line or "unavailable" in line]
            raise AssertionError(f"{what} → {r.status_code} {r.text[:300]} / {logged[-1:]}")
        if r.status_code >= 400:
            err = r.json()["error"]
            assert err["type"] == "keybrake_error" and isinstance(err["code"], str), what
            assert isinstance(err["message"], str) and err["message"] and "field" in err, what
            field = err["field"]
            paths = paths_of(body) if isinstance(body, dict) else []
            dotted_keys = any("." in str(seg) for p in paths for seg in p)  # a dotted path is ambiguous then
            if r.status_code == 422 and field and isinstance(body, dict) and not dotted_keys:
                # A real field path: one the body has, or a missing field of one it has, never a
                # validation library's internals such as `scope.function-after[_one(), BudgetScopeIn]`.
                dotted = {".".join(map(str, p)) for p in paths_of(body)}
                named = field in dotted or "." not in field
                named = named or any(field.startswith(d + ".") and "." not in field[len(d) + 1 :] for d in dotted)
                assert named, f"{what} → field {field!r}"
        elif path.endswith("/export"):
            assert r.content is not None


@pytest.fixture
def admin(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[Admin]:
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url)
        a = Admin(kb)
        yield a
        a.http.close()
        errors = [line for line in kb.logs.lines if "internal error" in line or "store unavailable" in line]
        assert not errors, "\n".join(errors[:5])


FUZZ = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_an_empty_label_prefix_is_refused_saying_what_to_send_with_a_real_field(kb: KeybrakeThread) -> None:
    """Newcomer k12: an empty prefix matches every value, so where it would mean "everything" it is
    refused, naming the explicit form: bulk revoke → `{"all": true}`, budget → `"scope": "all"`. The
    field is the user's path (`scope.label_prefix`), not pydantic's union tags."""
    with kb.admin() as c:
        r = c.post("/v1/keys/revoke", json={"label_prefix": ""})
        err = r.json()["error"]
        assert (r.status_code, err["field"]) == (422, "label_prefix") and '{"all": true}' in err["message"]
        r = c.post("/v1/budgets", json={**BUDGET, "scope": {"label_prefix": ""}})
        err = r.json()["error"]
        assert (r.status_code, err["field"]) == (422, "scope.label_prefix") and '"scope": "all"' in err["message"]
        r = c.post("/v1/budgets", json={**BUDGET, "scope": {"label_prefix": "x" * 201}})
        assert (r.status_code, r.json()["error"]["field"]) == (422, "scope.label_prefix")
        r = c.post("/v1/budgets", json={**BUDGET, "scope": {}})
        assert (r.status_code, r.json()["error"]["field"]) == (422, "scope")


def test_error_field_paths_drop_validation_internals() -> None:
    from keybrake.admin.errors import field_path

    assert (
        field_path(("body", "scope", "function-after[_one(), BudgetScopeIn]", "label_prefix")) == "scope.label_prefix"
    )
    assert field_path(("body", "scope", "literal['all']")) == "scope"
    assert field_path(("body", "secret", "dict[str,str]", "account_sid")) == "secret.account_sid"
    assert field_path(("body", "policy", "allowed_endpoints", 2)) == "policy.allowed_endpoints.2"
    assert field_path(("body",)) == ""
    assert field_path(("body", "scope", "BudgetScopeIn", "label_prefix")) == "scope.label_prefix"
    # A field the user named in CapWords is a field, not a class name.
    assert field_path(("body", "policy", "param_rules", "To")) == "policy.param_rules.To"
    assert field_path(("body", "metadata", "Env")) == "metadata.Env"


def test_budget_timezone_of_the_wrong_type_is_422(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        r = c.post("/v1/budgets", json={**BUDGET, "timezone": 5})
        assert r.status_code == 422 and r.json()["error"]["field"] == "timezone"
        created = c.post("/v1/budgets", json=BUDGET).json()
        r = c.patch(f"/v1/budgets/{created['id']}", json={"timezone": {"a": 1}})
        assert r.status_code == 422 and r.json()["error"]["field"] == "timezone"


@FUZZ
@given(data=st.data())
def test_key_bodies(admin: Admin, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["issue", "patch", "revoke", "bulk"]))
    if which == "issue":
        admin.send("POST", "/v1/keys", data.draw(mutated(KEY)))
    elif which == "patch":
        patch = {k: KEY[k] for k in ("label", "metadata", "policy")}
        admin.send("PATCH", f"/v1/keys/{admin.key_id}", data.draw(mutated(patch)))
    elif which == "revoke":
        key = admin.kb.issue({})
        admin.send("DELETE", f"/v1/keys/{key['id']}", data.draw(mutated({"reason": "done"})))
    else:
        admin.send("POST", "/v1/keys/revoke", data.draw(mutated(BULK)))


@FUZZ
@given(data=st.data())
def test_budget_bodies(admin: Admin, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        admin.send("POST", "/v1/budgets", data.draw(mutated(BUDGET)))
    else:
        patch = {k: v for k, v in BUDGET.items() if k != "scope"}
        admin.send("PATCH", f"/v1/budgets/{admin.budget_id}", data.draw(mutated(patch)))


@FUZZ
@given(data=st.data())
def test_credential_and_alert_bodies(admin: Admin, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["credential", "rotate", "alert"]))
    if which == "credential":
        admin.send("POST", "/v1/credentials", data.draw(mutated(CREDENTIAL)))
    elif which == "rotate":
        admin.send("POST", "/v1/credentials/default/rotate", data.draw(mutated(ROTATE)))
    else:
        admin.send("POST", "/v1/alerts", data.draw(mutated(ALERT)))


QUERIES: dict[str, tuple[str, ...]] = {
    "/v1/keys": ("label_prefix", "label", "vendor", "credential", "status", "limit", "cursor", "metadata.team",
                 "label_contains", "unknown"),
    "/v1/audit": ("key_id", "vendor", "verdict", "since", "until", "cursor", "limit", "metadata.team", "label_prefix",
                  "run_id", "status"),
    "/v1/audit/export": ("format", "since", "until", "key_id", "verdict", "metadata.x"),
    "/v1/spend": ("group_by", "since", "until", "label_prefix", "vendor", "timezone"),
    "/v1/alerts/deliveries": ("limit",),
    "/v1/budgets": ("x",),
    "/v1/credentials": ("x",),
    "/v1/alerts": ("x",),
}  # fmt: skip
QUERY_VALUES = TEXT | st.sampled_from([
    "0", "-1", "1001", "99999999999999999999", "300000000000", "²", "٣٤", "label:2", "day", "hour", "key", "csv",
    "jsonl", "2024-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1700000000",
    "active", "eyJ4Ijox", encode_cursor(10**25, "x"), encode_cursor(2**63, "vk_x"), encode_cursor(0, "\x00"),
])  # fmt: skip


@FUZZ
@given(data=st.data())
def test_query_and_path_parameters(admin: Admin, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["query", "query", "path", "delete"]))
    if which == "query":
        path = data.draw(st.sampled_from(sorted(QUERIES)))
        names = data.draw(st.lists(st.sampled_from(QUERIES[path]), max_size=4, unique=True))
        params = {n: data.draw(QUERY_VALUES) for n in names}
        admin.send("GET", path, params=params)
    elif which == "path":
        template = data.draw(st.sampled_from(["/v1/keys/{}", "/v1/budgets/{}", "/v1/credentials/{}", "/v1/audit/{}"]))
        value = _bytes_quoted(data.draw(TEXT)) or "x"
        admin.send("GET", template.format(value))
    else:
        params = {"revoke_keys": data.draw(QUERY_VALUES)}
        admin.send("DELETE", "/v1/credentials/nobody-has-this-name", params=params)
        value = _bytes_quoted(data.draw(TEXT)) or "x"
        admin.send("DELETE", f"/v1/alerts/{value}")
        admin.send("DELETE", f"/v1/budgets/{value}")
        admin.send("DELETE", f"/v1/keys/{value}", params={"reason": data.draw(QUERY_VALUES)})


def test_nul_characters_are_refused_as_input_on_every_engine(kb: KeybrakeThread) -> None:
    """PostgreSQL cannot hold NUL in text: it was a 503 there (an outage), not the 400 it is."""
    with kb.admin() as c:
        for r in (
            c.get("/v1/keys/%00"),
            c.get("/v1/keys", params={"label": "a\x00b"}),
            c.post("/v1/budgets", json={"name": "x\x00", "scope": "all", "daily_usd_cap": 1}),
            c.post("/v1/keys", json={"vendor": "stripe", "label": "run", "metadata": {"k": "v\x00"}}),
        ):
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text


def test_query_booleans_are_exactly_true_or_false(kb: KeybrakeThread) -> None:
    """Newcomer k12: `?revoke_keys=1` is 400 naming the parameter (docs/api.md, errors): env-var
    spellings (`1`, `yes`) are not query-string booleans."""
    with kb.admin() as c:
        for raw in ("1", "yes", "True"):
            r = c.delete("/v1/credentials/default", params={"revoke_keys": raw})
            err = r.json()["error"]
            assert (r.status_code, err["code"], err["field"]) == (400, "invalid_request", "revoke_keys"), raw


def test_item_routes_refuse_unknown_query_parameters_and_a_credential_delete_body(kb: KeybrakeThread) -> None:
    """docs/api.md: an unknown query parameter is a 400 naming it, on every route; a DELETE of a
    credential takes its flag in the query, and a body (where the flag would be lost) is refused."""
    key = kb.issue({"daily_usd_cap": 5})
    with kb.admin() as c:
        for method, path in (
            ("GET", f"/v1/keys/{key['id']}"),
            ("GET", "/v1/budgets/bud_nope"),
            ("DELETE", "/v1/budgets/bud_nope"),
            ("DELETE", "/v1/alerts/alr_nope"),
            ("GET", "/v1/credentials/default"),
            ("GET", "/v1/audit/req_nope"),
        ):
            r = c.request(method, path, params={"bogus": "1"})
            assert r.status_code == 400 and r.json()["error"]["field"] == "bogus", (method, path, r.text)
        assert c.get(f"/v1/keys/{key['id']}").status_code == 200
        r = c.request("DELETE", "/v1/credentials/default", json={"revoke_keys": True})
        assert r.status_code == 400 and "?revoke_keys=true" in r.json()["error"]["message"]
        assert c.get("/v1/credentials/default").status_code == 200  # nothing deleted
