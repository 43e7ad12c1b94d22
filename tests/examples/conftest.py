"""The recipes in examples/ run against a real Keybrake (tests/harness.py) and the fake Stripe."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# TEMPORARY: until the `keybrake_client` package (client/) is installed, the recipes import a
# stand-in from here. Delete this and the folder once it lands.
SHIM = Path(__file__).parent / "temporary_client_shim"
if importlib.util.find_spec("keybrake_client") is None:
    sys.path.insert(0, str(SHIM))
