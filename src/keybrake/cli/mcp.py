"""`keybrake mcp`: the MCP front over stdio (docs/mcp.md)."""

from __future__ import annotations

import os
import re

import click

VAULT_KEY_ENV = "KEYBRAKE_VAULT_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
RUN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # as X-Agent-Run-Id takes it (docs/api.md)


@click.command("mcp", short_help="Serve a vault key's vendor tools over MCP on stdio.")
@click.option(
    "--url",
    envvar="KEYBRAKE_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The Keybrake server (its proxy port) to relay to; KEYBRAKE_URL.",
)
def mcp(url: str) -> None:
    """Serve the Model Context Protocol on stdin/stdout for one agent run, for clients that start
    their tools' server as a process (desktop clients, agent frameworks).

    The run's vault key comes from KEYBRAKE_VAULT_KEY (never a flag: the process list shows flags),
    and KEYBRAKE_AGENT_RUN_ID, when set, is sent as the run id of every call. This process holds
    nothing else: every tool listing and tool call is relayed to the server's /_keybrake/mcp
    endpoint, which checks the key's policy and writes the audit row. Nothing is printed on
    stdout but the protocol; errors go to stderr.
    """
    import anyio

    from keybrake.mcp.bridge import RelayRefused, endpoint_url, in_clear, serve_stdio, shown
    from keybrake.tokens import VAULT_PREFIX, is_well_formed

    key = os.environ.get(VAULT_KEY_ENV, "").strip()
    if not key:
        raise click.UsageError(f"{VAULT_KEY_ENV} is not set: put the run's vault key (vault_key_…) in it")
    if not is_well_formed(key, VAULT_PREFIX):
        raise click.UsageError(f"{VAULT_KEY_ENV} is not a vault key (vault_key_… with a valid checksum)")
    try:
        endpoint_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    run_id = os.environ.get("KEYBRAKE_AGENT_RUN_ID") or None
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise click.UsageError("KEYBRAKE_AGENT_RUN_ID must be at most 128 characters of [A-Za-z0-9._:-]")
    if in_clear(url):
        click.echo(
            f"warning: {shown(url)} is plain http to another host: the vault key crosses the network unencrypted;"
            " put Keybrake behind TLS and use https://",
            err=True,
        )
    try:
        anyio.run(serve_stdio, url, key, run_id)
    except RelayRefused as exc:
        raise click.ClickException(f"cannot serve MCP: {exc}") from None
    except Exception as exc:  # the server unreachable or the key refused at start: say so on stderr
        raise click.ClickException(f"cannot serve MCP from {shown(url)}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a failure to connect (task groups wrap it in ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]
