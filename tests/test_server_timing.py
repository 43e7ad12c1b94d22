"""`Server-Timing` on every proxied answer (issue 14): Keybrake's own time and the vendor's, in the
W3C Server Timing syntax, equal to the audit row's `overhead_ms` / `upstream_latency_ms`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, free_port
from tests.stripe_sdk import client

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 token
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*{_TOKEN}\s*=\s*(?:{_TOKEN}|{_QUOTED})\s*")


def _split(value: str, sep: str) -> list[str]:
    """`value` split on `sep` outside quoted strings."""
    return re.findall(rf'(?:{_QUOTED}|[^{sep}"])+', value)


def parse_server_timing(value: str) -> dict[str, dict[str, str]]:
    """Per the spec's grammar (`#server-timing-metric`, `metric-name *( OWS ";" OWS param )`,
    `param = token OWS "=" OWS (token / quoted-string)`): name → its params; AssertionError if
    malformed. Commas and semicolons inside quoted strings split nothing."""
    assert re.fullmatch(rf'(?:{_QUOTED}|[^"])*', value), f"unbalanced quotes in {value!r}"
    metrics: dict[str, dict[str, str]] = {}
    for part in _split(value, ","):
        assert not part.strip().startswith(";"), f"a metric without a name in {value!r}"
        name, *params = _split(part, ";")
        assert re.fullmatch(rf"\s*{_TOKEN}\s*", name), f"malformed metric name {name!r} in {value!r}"
        assert all(_PARAM.fullmatch(p) for p in params), f"malformed params {params!r} in {value!r}"
        assert not re.search(r";\s*(;|$)", part), f"an empty param in {value!r}"
        got = {}
        for p in params:
            k, v = p.split("=", 1)
            got[k.strip()] = v.strip()
        metrics[name.strip()] = got
    assert metrics, f"empty Server-Timing {value!r}"
    return metrics


def timings(r: httpx.Response | Any) -> dict[str, float]:
    """The answer's one Server-Timing header, parsed: {"keybrake": ms, "upstream": ms?}."""
    values = r.headers.get_list("server-timing") if isinstance(r, httpx.Response) else [r.headers["server-timing"]]
    assert len(values) == 1, values
    parsed = parse_server_timing(values[0])
    assert set(parsed) <= {"keybrake", "upstream"}, parsed
    assert all(re.fullmatch(r"\d+\.\d{3}", p["dur"]) for p in parsed.values()), parsed  # dur: ms, 3 decimals
    return {name: float(p["dur"]) for name, p in parsed.items()}


def row_of(kb: KeybrakeThread, r: httpx.Response) -> dict[str, Any]:
    with kb.admin() as c:
        got = c.get(f"/v1/audit/{r.headers['x-keybrake-request-id']}")
        assert got.status_code == 200, got.text
        return got.json()  # type: ignore[no-any-return]


@pytest.mark.store_free
def test_the_parser_reads_the_spec_examples_and_refuses_garbage() -> None:
    assert parse_server_timing('cache;desc="Cache, Read";dur=23.2, db;dur=53') == {
        "cache": {"desc": '"Cache, Read"', "dur": "23.2"},
        "db": {"dur": "53"},
    }
    assert parse_server_timing("missedCache") == {"missedCache": {}}
    for bad in ("keybrake dur=1", "keybrake;dur", "a b", ";dur=1"):
        with pytest.raises(AssertionError):
            parse_server_timing(bad)


def test_allowed_answer_times_keybrake_and_the_vendor_as_the_audit_row(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": 300, "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    assert r.status_code == 200
    t = timings(r)
    row = row_of(kb, r)
    assert row["verdict"] == "allowed"
    assert t == {"keybrake": row["overhead_ms"], "upstream": row["upstream_latency_ms"]}
    assert float(r.headers["x-keybrake-overhead-ms"]) == round(row["overhead_ms"], 1)


def test_denials_before_and_after_the_key_is_known_carry_it(kb: KeybrakeThread) -> None:
    nokey = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"})
    assert nokey.status_code == 401
    assert timings(nokey) == {"keybrake": row_of(kb, nokey)["overhead_ms"]}  # nothing sent: no upstream
    unknown = httpx.get(f"{kb.url}/stripe/v1/customers", headers={"Authorization": "Bearer vault_key_" + "x" * 40})
    assert unknown.status_code == 401 and set(timings(unknown)) == {"keybrake"}
    key = kb.issue({"total_usd_cap": 2})
    capped = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": 300, "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    assert capped.status_code == 429 and capped.headers["x-keybrake-cap-hit"] == "true"
    row = row_of(kb, capped)
    assert row["verdict"] == "cap_exceeded" and timings(capped) == {"keybrake": row["overhead_ms"]}


def test_vendor_errors_carry_it_and_a_vendor_server_timing_never_passes(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    auth = {"Authorization": f"Bearer {key['key']}"}
    charge = {"id": "ch_1", "object": "charge", "amount": 100, "currency": "usd", "status": "succeeded"}
    spoof = {"Server-Timing": 'keybrake;dur=0.001, upstream;dur=0, db;dur=5;desc="x"'}
    fake_stripe.next_status = [(200, charge, spoof), (500, {"error": {"type": "api_error"}}, spoof)]
    for status, verdict in ((200, "allowed"), (500, "outcome_unknown")):
        r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=auth)
        assert r.status_code == status
        row = row_of(kb, r)
        assert row["verdict"] == verdict
        assert timings(r) == {"keybrake": row["overhead_ms"], "upstream": row["upstream_latency_ms"]}
        assert "db" not in r.headers["server-timing"]


def test_an_unreachable_vendor_and_an_unavailable_store_answer_with_it(tmp_path: Path) -> None:
    with KeybrakeThread(tmp_path / "d", sqlite_busy_timeout_ms=300, pg_statement_timeout_ms=300) as kb:
        kb.add_credential(f"http://127.0.0.1:{free_port()}")  # nothing listens there
        key = kb.issue({"daily_usd_cap": 10})
        auth = {"Authorization": f"Bearer {key['key']}"}
        r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=auth)
        assert r.status_code == 502
        row = row_of(kb, r)
        assert row["verdict"] == "upstream_error"
        assert timings(r)["keybrake"] == row["overhead_ms"]
        with kb.write_lock_held():
            r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=auth)
        assert r.status_code == 503 and "x-keybrake-request-id" not in r.headers  # no row: nothing to compare
        assert set(timings(r)) == {"keybrake"} and timings(r)["keybrake"] > 0


def test_stripe_sdk_sees_it_on_answers_and_errors(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 10, "allowed_endpoints": ["GET /v1/customers", "POST /v1/customers"]})
    sc = client(kb, key)
    customer = sc.v1.customers.create({"email": "a@example.com"})
    assert customer.last_response is not None
    got = timings(customer.last_response)
    assert set(got) == {"keybrake", "upstream"} and got["upstream"] > 0
    with pytest.raises(stripe.PermissionError) as info:
        sc.v1.charges.create({"amount": 100, "currency": "usd"})
    assert info.value.headers is not None
    assert set(parse_server_timing(info.value.headers["server-timing"])) == {"keybrake"}


def test_a_deduplicated_replay_carries_its_own_timing_not_the_first_answers(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 20, "dedup_window_seconds": 30})
    auth = {"Authorization": f"Bearer {key['key']}"}
    charge = {"id": "ch_d", "object": "charge", "amount": 700, "currency": "usd", "status": "succeeded"}
    fake_stripe.next_status = [(200, charge, {"Server-Timing": "keybrake;dur=0.001"})]
    body = {"amount": 700, "currency": "usd", "source": "tok_visa"}
    first = httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=auth)
    second = httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=auth)
    assert second.headers["x-keybrake-deduplicated"] == "true" and second.json()["id"] == "ch_d"
    row = row_of(kb, second)
    assert row["verdict"] == "deduplicated"
    assert timings(second) == {"keybrake": row["overhead_ms"]}  # nothing sent: the replay's own time
    assert timings(first)["keybrake"] == row_of(kb, first)["overhead_ms"]
