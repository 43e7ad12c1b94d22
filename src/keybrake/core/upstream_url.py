"""Where a vendor secret (or an alert) may be sent: the URL rules, pure and free of I/O.

One function decides, and every place that is about to send a secret asks it with the settings
of the running process: the admin API when a credential or an alert destination is written, and
the proxy before each forwarded request, pre-flight lookup, reconciliation read and alert
delivery. A URL that was accepted under other settings (say `KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1`
before a restart) is refused as soon as the current settings refuse it.

The rules (docs/operations.md, "Where secrets may be sent"):

- `https://`, or plain `http://` only to a loopback host and only with
  `KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1`;
- no userinfo, query or fragment;
- for a vendor credential, the host is one of the vendor's API hosts or listed in
  `KEYBRAKE_UPSTREAM_HOSTS` (alert destinations may name any host; the resolver still refuses
  non-public addresses for both).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def url_refusal(
    url: str,
    *,
    allowed_hosts: tuple[str, ...] | None,
    listed_hosts: tuple[str, ...],
    allow_insecure: bool,
    vendor: str | None = None,
    what: str = "base_url",
    allow_query: bool = False,
) -> str | None:
    """Why `url` may not receive a secret under these settings, or None if it may.

    `allowed_hosts`: the vendor's own API hosts (None: any host, as for alert destinations);
    `listed_hosts`: `KEYBRAKE_UPSTREAM_HOSTS`; `allow_insecure`: `KEYBRAKE_ALLOW_INSECURE_UPSTREAM`.
    `what` names the field in the message; `allow_query`: a query string is allowed (webhooks).
    Never raises, whatever the string.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        return f"{what} is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return f"{what} must be an https:// URL"
    if userinfo or parts.fragment or (parts.query and not allow_query):
        parts_named = "userinfo or a fragment" if allow_query else "userinfo, a query or a fragment"
        return f"{what} may not carry {parts_named}"
    if parts.scheme == "http" and not (allow_insecure and is_loopback(host)):
        return (
            f"{what} must be https://; plain http is accepted only for loopback hosts "
            "with KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1"
        )
    if allowed_hosts is not None and not (host_listed(host, allowed_hosts) or host_listed(host, listed_hosts)):
        name = f"a {vendor} API host" if vendor else "an allowed host"
        return f"{what} host {host!r} is not {name}; list it in KEYBRAKE_UPSTREAM_HOSTS to allow it"
    return None


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_listed(host: str, listed: tuple[str, ...]) -> bool:
    """Exact names, `*.suffix`, or one inner `*` standing for one or more labels (`api.*.twilio.com`)."""
    for entry in listed:
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if "*" in entry[1:]:
            head, tail = entry.split("*", 1)
            if host.startswith(head) and host.endswith(tail) and len(host) > len(head) + len(tail):
                return True
        if host == entry:
            return True
    return False
