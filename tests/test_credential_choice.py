"""Which credential a key is issued on when `credential` is left out (docs/api.md, POST /v1/keys):
the vendor's only one, else the one named `default`, else 422 naming the choices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keybrake.admin.errors import ApiError
from keybrake.admin.keys import pick_credential
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data") as kb:
        yield kb


def test_a_second_credential_keeps_default_as_the_choice(server: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    server.add_credential(fake_stripe.base_url)
    only = server.issue({"daily_usd_cap": 5})
    assert only["credential"] == "default"
    assert not any("credential" in w for w in only["warnings"])  # the only one: nothing to say
    server.add_credential(fake_stripe.base_url, name="eu")
    chosen = server.issue({"daily_usd_cap": 5})
    assert chosen["credential"] == "default"
    assert "credential not named: using 'default'" in chosen["warnings"]  # several: say which
    named = server.issue({"daily_usd_cap": 5}, credential="eu")
    assert named["credential"] == "eu" and not any("credential" in w for w in named["warnings"])
    named_default = server.issue({"daily_usd_cap": 5}, credential="default")
    assert not any("credential" in w for w in named_default["warnings"])


def test_several_credentials_without_default_are_refused_naming_them(
    server: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    server.add_credential(fake_stripe.base_url, name="us")
    assert server.issue({"daily_usd_cap": 5})["credential"] == "us"  # the only one
    server.add_credential(fake_stripe.base_url, name="eu")
    with server.admin() as c:
        r = c.post("/v1/keys", json={"vendor": "stripe", "policy": {"daily_usd_cap": 5}})
    err = r.json()["error"]
    assert r.status_code == 422 and err["field"] == "credential"
    assert "eu, us" in err["message"] and "default" in err["message"]


@pytest.mark.parametrize(
    ("names", "given", "chosen"),
    [
        (["a"], None, "a"),
        (["default"], None, "default"),
        (["x", "default", "y"], None, "default"),
        (["x", "default"], "x", "x"),
        (["x", "y"], None, None),
        ([], None, None),
        (["x"], "z", None),
    ],
)
def test_the_rule_for_every_shape(names: list[str], given: str | None, chosen: str | None) -> None:
    if chosen is not None:
        assert pick_credential("twilio", names, given) == chosen
        return
    with pytest.raises(ApiError) as exc:
        pick_credential("twilio", names, given)
    assert exc.value.field == "credential" and "twilio" in exc.value.message
    for n in names:
        assert n in exc.value.message
