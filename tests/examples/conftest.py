"""The recipes in examples/ run against a real Keybrake (tests/harness.py) and the fake Stripe."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
