"""`keybrake demo`: a runaway agent stopped by a cap, with no vendor account and no network.

The demo starts `keybrake serve` as a subprocess on a temporary data directory and free loopback
ports, with local sandbox vendors (`sandbox_stripe`, `sandbox_twilio`, `sandbox_resend`) answering
in the vendors' documented shapes; it stores a sandbox credential, issues a vault key with a USD
cap (and a daily send cap for emails and messages), runs a scripted agent loop (`scenarios`),
revokes the key, prints the audit trail and what the same loop moves without Keybrake, and
removes everything it made (`run`).
"""

from __future__ import annotations

from keybrake.demo.run import DemoError, DemoOptions, run_demo
from keybrake.demo.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "DemoError", "DemoOptions", "run_demo"]
