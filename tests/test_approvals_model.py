"""Generated runs of held and unheld calls under a USD cap, decided at random, against the rules
of human approval (docs/approvals.md): whatever the amounts, the order and the decisions,

- no more money moves than the cap allows, counted once, and nothing stays reserved;
- a call at or under the threshold is never held; a call over it is sent only once approved;
- a denied or undecided call never reaches the vendor; each approved call reaches it once.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread, examples, wait_for

THRESHOLD = 30


@settings(max_examples=examples(8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cap=st.integers(min_value=40, max_value=160),
    amounts=st.lists(st.integers(min_value=5, max_value=70), min_size=1, max_size=7),
    decisions=st.lists(st.sampled_from(["approve", "deny"]), min_size=7, max_size=7),
)
def test_held_calls_never_move_more_than_the_cap_and_only_approved_ones_are_sent(
    kb: KeybrakeThread, fake_stripe: FakeStripe, cap: int, amounts: list[int], decisions: list[str]
) -> None:
    key = kb.issue({"daily_usd_cap": cap, "approval_above_usd": THRESHOLD, "approval_timeout_seconds": 60})
    before = len([r for r in fake_stripe.requests if r.path == "/v1/charges"])
    answers: dict[int, httpx.Response] = {}

    def agent(i: int, dollars: int) -> None:
        answers[i] = httpx.post(
            f"{kb.url}/stripe/v1/charges",
            data={"amount": str(dollars * 100), "currency": "usd", "source": "tok_visa", "description": f"c{i}"},
            headers={"Authorization": f"Bearer {key['key']}"},
            timeout=60,
        )

    threads = [threading.Thread(target=agent, args=(i, a), daemon=True) for i, a in enumerate(amounts)]
    for t in threads:
        t.start()
    admin = httpx.Client(base_url=kb.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    def held() -> list[dict[str, Any]]:
        r = admin.get("/v1/approvals", params={"state": "pending", "key_id": key["id"]})
        return r.json()["data"]  # type: ignore[no-any-return]

    # Every call is either answered or held (a held call is a pending approval); then decide them.
    def every_call_placed() -> tuple[list[dict[str, Any]]] | None:
        h = held()
        return (h,) if len(answers) + len(h) == len(amounts) else None

    (pending,) = wait_for(every_call_placed, 30)
    decided: dict[str, str] = {}
    for a, decision in zip(sorted(pending, key=lambda a: a["id"]), decisions, strict=False):
        body = {"reason": "generated"} if decision == "deny" else {}
        assert admin.post(f"/v1/approvals/{a['id']}/{decision}", json=body).status_code == 200
        decided[a["id"]] = decision
    for t in threads:
        t.join(30)
    assert len(answers) == len(amounts)

    ok = {i for i, r in answers.items() if r.status_code == 200}
    for i, r in answers.items():
        if i not in ok:
            code = r.json()["error"]["code"]
            assert code in ("spend_cap_exceeded", "approval_denied"), r.text
            if amounts[i] <= THRESHOLD:
                assert code == "spend_cap_exceeded"  # never held, so never denied
    moved = sum(amounts[i] for i in ok)
    assert moved <= cap
    # Exactly the calls answered 200 reached the vendor, once each.
    sent = [r for r in fake_stripe.requests if r.path == "/v1/charges"][before:]
    assert sorted(r.form["description"][0] for r in sent) == sorted(f"c{i}" for i in ok)
    # A call over the threshold went only through an approval; each approval decided one call.
    over = [i for i in ok if amounts[i] > THRESHOLD]
    assert len(over) == sum(1 for d in decided.values() if d == "approve")
    assert len(pending) == sum(1 for i in range(len(amounts)) if amounts[i] > THRESHOLD and _reserved(i, answers))

    def books() -> dict[str, Any] | None:
        u = kb.key(key["id"])["usage"]["daily_usd"]
        return u if u["reserved"] == 0 else None

    usage = wait_for(books, 20)
    assert usage["used"] == moved
    admin.close()


def _reserved(i: int, answers: dict[int, httpx.Response]) -> bool:
    """Whether call `i` got past the cap (it was held or sent): not refused by the cap."""
    r = answers[i]
    return r.status_code == 200 or r.json()["error"]["code"] != "spend_cap_exceeded"
