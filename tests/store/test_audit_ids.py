"""Audit ids (store/ids.py): python-ulid's form and millisecond, strictly increasing, and the
floor below every id of its millisecond."""

from __future__ import annotations

import os
import random

from ulid import ULID

from keybrake.store.ids import audit_id_floor, encode, new_audit_id


def test_encode_is_the_ulid_string_form() -> None:
    rng = random.Random(14)
    values = [0, 1, (1 << 128) - 1, 1 << 125, (1 << 80) - 1] + [rng.getrandbits(128) for _ in range(2000)]
    for value in values:
        assert encode(value) == str(ULID.from_int(value))


def test_ids_carry_the_millisecond_python_ulid_would() -> None:
    for ts in (1, 1_764_000_000_000, 1_764_000_000_123, 1_700_000_000_001, 2**48 - 1):
        minted = new_audit_id(ts)
        assert minted.startswith("kbr_") and len(minted) == 30
        assert ULID.from_str(minted[4:]).milliseconds == ULID.from_timestamp(ts / 1000).milliseconds
        assert audit_id_floor(ts) <= minted


def test_ids_strictly_increase_within_a_millisecond_and_differ_across() -> None:
    same = [new_audit_id(1_800_000_000_000) for _ in range(500)]
    assert same == sorted(same) and len(set(same)) == 500
    assert int(ULID.from_str(same[1][4:])) == int(ULID.from_str(same[0][4:])) + 1
    spread = [new_audit_id(1_800_000_000_001 + i) for i in range(500)]
    assert spread == sorted(spread)
    randomness = {s[14:] for s in spread}
    assert len(randomness) == 500  # fresh randomness each new millisecond


def test_a_forked_child_does_not_reuse_the_parents_pool() -> None:
    new_audit_id(1_700_000_000_000)  # the parent's pool now holds unspent randomness
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: mint at a new millisecond and report it
        os.write(w, new_audit_id(1_700_000_000_001).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.waitpid(pid, 0)
    assert child != new_audit_id(1_700_000_000_001)
