"""Decision links, pure (core/approvals.py): each signs exactly its approval, action and expiry,
under a key that is the install's own; only the exact link path is recognised."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.core.approvals import decision_links, decision_path_id, link_secret, link_valid

AID = "apr_01KBC3Y8N4J6W2Q5R7T9V0X1Z3"
ulid = st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26).map(lambda s: "apr_" + s)


def parts(url: str) -> tuple[str, str, int, str]:
    u = urlsplit(url)
    q = parse_qs(u.query)
    return u.path.split("/")[-2], q["action"][0], int(q["expires"][0]), q["sig"][0]


@settings(max_examples=200, deadline=None)
@given(
    aid=ulid,
    other=ulid,
    expires=st.integers(0, 10**15),
    delta=st.integers(1, 10**6),
    pepper=st.binary(min_size=32, max_size=32),
)
def test_a_link_verifies_only_for_its_own_approval_action_and_expiry(
    aid: str, other: str, expires: int, delta: int, pepper: bytes
) -> None:
    secret = link_secret(pepper)
    links = decision_links("https://kb.example.com/ops", secret, aid, expires)
    for action, url in links.items():
        assert url.startswith(f"https://kb.example.com/ops/v1/approvals/{aid}/decide?action={action}&")
        got_id, got_action, got_expires, sig = parts(url)
        assert (got_id, got_action, got_expires) == (aid, action, expires)
        assert decision_path_id(urlsplit(url).path[len("/ops") :]) == aid
        assert link_valid(secret, aid, action, expires, sig)
        swapped = "deny" if action == "approve" else "approve"
        assert not link_valid(secret, aid, swapped, expires, sig)
        assert not link_valid(secret, aid, action, expires + delta, sig)
        assert not link_valid(secret, aid, action, expires - delta, sig)
        assert other == aid or not link_valid(secret, other, action, expires, sig)
        assert not link_valid(link_secret(bytes(b ^ 1 for b in pepper)), aid, action, expires, sig)
    assert links["approve"].split("sig=")[1] != links["deny"].split("sig=")[1]


def test_the_link_secret_is_not_the_pepper_and_is_fixed_per_pepper() -> None:
    assert link_secret(b"p" * 32) == link_secret(b"p" * 32) != b"p" * 32
    assert link_secret(b"p" * 32) != link_secret(b"q" * 32)


def test_only_the_exact_path_is_a_decision_link() -> None:
    assert decision_path_id(f"/v1/approvals/{AID}/decide") == AID
    for near in (
        f"/v1/approvals/{AID}/decide/",
        f"/v1/approvals/{AID}/decide\n",
        f"/v1/approvals/{AID}/decidex",
        f"//v1/approvals/{AID}/decide",
        f"/v1/approvals/{AID.lower()}/decide",
        f"/v1/approvals/{AID}0/decide",
        f"/v1/approvals/{AID[:-1]}/decide",
        f"/v1/approvals/{AID[:-1]}I/decide",  # not a ULID character
        f"/v1/approvals/{AID}/approve",
        f"/v1/keys/{AID}/decide",
        f"/x/v1/approvals/{AID}/decide",
        f"/v1/approvals/{AID.replace('0', '٠')}/decide",  # a non-ASCII digit
    ):
        assert decision_path_id(near) is None, near
