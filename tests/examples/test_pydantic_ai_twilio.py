"""examples/pydantic_ai_twilio.py against a real Keybrake and the fake Twilio: PydanticAI's
FunctionModel runs away texting every customer twice; dedup replays the repeats, the daily send cap
refuses the fourth text and the tool's STOP answer ends the run."""

from __future__ import annotations

import pytest

from examples import pydantic_ai_twilio as recipe
from tests.fakes.twilio_server import FakeTwilioThread
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def test_the_send_cap_stops_the_runaway_texts_and_the_model_ends_the_run(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread
) -> None:
    report = recipe.main(kbt.url, ADMIN_TOKEN, run_id="run-pai-sms-1")

    assert report.output.startswith("I stopped: STOP: Keybrake refused this text (send_cap_exceeded")
    assert "Do not retry" in report.output
    # customer 1, customer 1 again (replayed, not sent), 2, 2 again, 3, 3 again, then 4 refused
    assert [(r.status, r.verdict) for r in report.rows] == [(201, "allowed"), (201, "deduplicated")] * 3 + [
        (429, "cap_exceeded")
    ]
    assert (report.forwarded, report.deduplicated) == (3, 3)
    assert [code for code, _ in report.refused] == ["send_cap_exceeded"]
    sent = [r for r in fake_twilio.fake.requests if r.method == "POST"]
    assert [r.form["To"][0] for r in sent] == recipe.CUSTOMERS[:3]
    by_run = kbt.audit(agent_run_id="run-pai-sms-1")
    assert sorted(r["id"] for r in by_run) == sorted(r.id for r in report.rows)
    assert kbt.key(report.key_id)["status"] == "revoked"


def test_a_model_that_ignores_stop_is_ended_by_the_tool_call_limit_without_another_text(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread
) -> None:
    report = recipe.main(kbt.url, ADMIN_TOKEN, run_id="run-pai-sms-2", obey_stop=False)

    assert report.output.startswith("run ended by its limit:")
    assert [code for code, _ in report.refused] == ["send_cap_exceeded"]
    assert len(report.rows) == 7 and report.forwarded == 3
    assert len([r for r in fake_twilio.fake.requests if r.method == "POST"]) == 3


def test_an_empty_run_id_is_refused_not_replaced(kbt: KeybrakeThread, fake_twilio: FakeTwilioThread) -> None:
    with pytest.raises(ValueError, match="run_id must be a non-empty string"):
        recipe.main(kbt.url, ADMIN_TOKEN, run_id="")
    assert [r for r in fake_twilio.fake.requests if r.method == "POST"] == []
