"""Whoever reaches the admin API on the agents' port (the single-listener layout: the proxy and the
admin API share it) is not told where an admin token is kept. The bootstrap token file now stays
until the operator makes a token of their own, in `./keybrake-data` by default, often the working
tree an agent with a file-reading tool works in; the 401 naming `bootstrap-admin-token` tells a
prompt-injected agent exactly which file to read to become admin."""

from __future__ import annotations

import httpx

from tests.harness import KeybrakeThread


def test_a_401_on_the_agents_port_does_not_name_the_admin_token_file(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 1})
    for headers in ({}, {"Authorization": f"Bearer {key['key']}"}, {"Authorization": "Bearer kb_admin_guess"}):
        r = httpx.get(f"{kb.url}/v1/keys", headers=headers)
        assert r.status_code == 401
        assert "bootstrap-admin-token" not in r.text, r.text
