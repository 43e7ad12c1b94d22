"""Re-export of `keybrake_client.vendors.postmark` (the `keybrake-client` distribution, extra `postmark`).

Kept so `from keybrake.integrations.postmark import …` keeps working; new code imports
`keybrake_client.vendors.postmark` (or uses `Keybrake.run(...).postmark()`).
Install: `pip install './client[postmark]'`.
"""

from __future__ import annotations

try:
    from keybrake_client.vendors.postmark import KeybrakePostmarkClient, KeybrakePostmarkError, client
except ModuleNotFoundError as exc:  # the client, or the vendor's SDK, is not installed
    raise ModuleNotFoundError(
        f"keybrake.integrations.postmark needs the keybrake-client package with its postmark extra "
        f"(pip install './client[postmark]' from the Keybrake repository): {exc}",
        name=exc.name,
    ) from exc

__all__ = ["KeybrakePostmarkClient", "KeybrakePostmarkError", "client"]
