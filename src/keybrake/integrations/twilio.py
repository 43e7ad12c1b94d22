"""Re-export of `keybrake_client.vendors.twilio` (the `keybrake-client` distribution, extra `twilio`).

Kept so `from keybrake.integrations.twilio import …` keeps working; new code imports
`keybrake_client.vendors.twilio` (or uses `Keybrake.run(...).twilio()`). Install: `pip install './client[twilio]'`.
"""

from __future__ import annotations

try:
    from keybrake_client.vendors.twilio import TWILIO_API, KeybrakeHttpClient, KeybrakeTwilioError, client, key_id
except ModuleNotFoundError as exc:  # the client, or the vendor's SDK, is not installed
    raise ModuleNotFoundError(
        f"keybrake.integrations.twilio needs the keybrake-client package with its twilio extra "
        f"(pip install './client[twilio]' from the Keybrake repository): {exc}",
        name=exc.name,
    ) from exc

__all__ = ["TWILIO_API", "KeybrakeHttpClient", "KeybrakeTwilioError", "client", "key_id"]
