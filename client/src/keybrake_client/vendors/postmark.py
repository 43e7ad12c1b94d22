"""postmarker (the most-used Python client for Postmark) through Keybrake.

postmarker joins its API root and each endpoint with `urllib.parse.urljoin`, and its endpoints
start with `/` (`/email`, `/email/batch`, …), so a `root_api_url` with a path — Keybrake's
`{proxy_url}/postmark/` — loses the path and the request would reach `{proxy_url}/email`.
This module ships a client that keeps the prefix, and refuses to send anything (and so the
vault key) anywhere but Keybrake::

    from keybrake_client.vendors.postmark import client
    postmark = client("http://127.0.0.1:8080", "vault_key_…")
    postmark.emails.send(From="bot@mail.acme.io", To="ana@example.com", Subject="Hi", TextBody="…")

The vault key goes where postmarker puts the server token (`X-Postmark-Server-Token`);
Keybrake replaces it with the real one. Account-token calls (servers, domains, sender
signatures) are not made through Keybrake: the helper takes no account token. Postmark's status
page and spam-check API are not Postmark's email API and are refused by the helper. Requires the
`postmarker` package (`pip install postmarker`).
"""

from __future__ import annotations

from typing import Any

from postmarker.core import PostmarkClient


class KeybrakePostmarkError(RuntimeError):
    """The helper refused a request: it would have gone somewhere other than Keybrake."""


class KeybrakePostmarkClient(PostmarkClient):  # type: ignore[misc]  # postmarker ships no type hints
    """A `PostmarkClient` whose every API call goes to `{proxy_url}/postmark/<endpoint>`.

    `proxy_url`: Keybrake's base URL (e.g. `http://127.0.0.1:8080`); `vault_key`: the agent's
    Keybrake vault key. Other keyword arguments are postmarker's (`max_retries`, `timeout`,
    `verbosity`); `root_api_url` and `account_token` are not taken.
    """

    def __init__(self, proxy_url: str, vault_key: str, **kwargs: Any) -> None:
        for taken in ("root_api_url", "account_token", "server_token"):
            if taken in kwargs:
                raise TypeError(f"{taken} is set by keybrake_client.vendors.postmark and cannot be given")
        super().__init__(server_token=vault_key, root_api_url=proxy_url.rstrip("/") + "/postmark/", **kwargs)

    def __repr__(self) -> str:  # postmarker's repr shows the token: never the vault key
        return f"<KeybrakePostmarkClient: {self.root_api_url}>"

    def _call(self, method: str, root: str, endpoint: str, data: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        if root != self.root_api_url:
            raise KeybrakePostmarkError(
                f"{root} is not Postmark's email API: only api.postmarkapp.com goes through Keybrake, "
                "and the vault key is never sent anywhere else"
            )
        if headers and "X-Postmark-Account-Token" in headers:
            raise KeybrakePostmarkError(
                f"{endpoint} needs Postmark's account token; account-level calls do not go through Keybrake"
            )
        return super()._call(method, root, endpoint.lstrip("/"), data, headers, **kwargs)  # urljoin keeps /postmark/


def client(proxy_url: str, vault_key: str, **kwargs: Any) -> KeybrakePostmarkClient:
    """A ready postmarker client whose every request goes through Keybrake with `vault_key`.

    `kwargs`: postmarker's `max_retries`, `timeout`, `verbosity`. Raises TypeError for
    `root_api_url`, `account_token` or `server_token`.
    """
    return KeybrakePostmarkClient(proxy_url, vault_key, **kwargs)
