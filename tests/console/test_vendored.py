"""The vendored front-end files are byte for byte the published ones listed in VENDORED.md."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "src/keybrake/console/static/vendor"


def test_each_vendored_file_matches_its_recorded_digest() -> None:
    rows = re.findall(r"^\| `([^`]+)` .*\| `([0-9a-f]{64})` \|$", (VENDOR / "VENDORED.md").read_text(), re.M)
    assert len(rows) == 2, rows
    for name, digest in rows:
        path = ROOT / name if "/" in name else VENDOR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
