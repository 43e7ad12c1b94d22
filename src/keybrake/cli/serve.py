"""`keybrake serve`: the proxy and the admin API in one process."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from keybrake import logs
from keybrake.cli.common import data_dir_opt, settings_for
from keybrake.cli.datadir import announce_new_store, take_serve_lock
from keybrake.config import Settings, SettingsError, check_listeners
from keybrake.crypto import MasterKeyError
from keybrake.runtime import announce_bootstrap_token, ensure_admin_token, open_runtime
from keybrake.store.migrate import SchemaError
from keybrake.vendors.configured.load import installed

if TYPE_CHECKING:
    from keybrake.listener import Listeners


@click.command(short_help="Run the proxy and the admin API.")
@click.option("--host", default=None, help="Listen address (KEYBRAKE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (KEYBRAKE_PORT, default 8080).")
@click.option(
    "--admin-host",
    default=None,
    help="Serve the admin API on its own address (KEYBRAKE_ADMIN_HOST, default 127.0.0.1 with --admin-port).",
)
@click.option(
    "--admin-port",
    type=int,
    default=None,
    help="Serve the admin API on its own port, not on the proxy port (KEYBRAKE_ADMIN_PORT).",
)
@click.option(
    "--admin-socket",
    default=None,
    help="Serve the admin API on a unix socket (mode 0600), not on the proxy port (KEYBRAKE_ADMIN_SOCKET).",
)
@data_dir_opt
@click.option("--migrate", is_flag=True, help="Upgrade an older database schema before starting.")
@click.option(
    "--shared-data-dir",
    is_flag=True,
    help="Share an embedded SQLite store with other serve processes started with this flag (two processes, "
    "one data dir); without it a second serve on the same store is refused.",
)
def serve(
    host: str | None,
    port: int | None,
    admin_host: str | None,
    admin_port: int | None,
    admin_socket: str | None,
    data_dir: str | None,
    migrate: bool,
    shared_data_dir: bool,
) -> None:
    """Run the proxy and the admin API (on the proxy port, or on a listener of its own)."""
    import uvloop

    from keybrake.listener import ListenerError, bind_listeners, ensure_fd_limit

    settings = settings_for(data_dir).with_overrides(
        host=host,
        port=port,
        admin_host=admin_host,
        admin_port=admin_port,
        admin_socket=Path(admin_socket) if admin_socket else None,
        migrate=migrate or None,
    )
    try:
        check_listeners(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        listeners = bind_listeners(settings)  # first: a port in use stops the start before anything is created
    except ListenerError as exc:
        raise click.ClickException(str(exc)) from None
    announce_new_store(settings)
    lock = take_serve_lock(settings, shared=shared_data_dir)  # before the store is opened
    logs.configure(settings.log_level)
    for name, source in installed().items():  # read at start-up: a changed file takes effect on restart
        logs.event(logging.getLogger("keybrake"), "vendor defined by a file", vendor=name, file=source)
    warning = ensure_fd_limit(settings)
    if warning:
        logs.event(logging.getLogger("keybrake"), warning, logging.WARNING)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(settings, listeners))
    finally:
        listeners.close()
        if lock is not None:
            lock.release()


async def _serve(settings: Settings, listeners: Listeners) -> None:
    """Open (or create) the store, announce a bootstrap admin token, serve on `listeners` until stopped."""

    from keybrake.app import KeybrakeApp
    from keybrake.listener import KeybrakeServer, server_config

    try:
        rt = await open_runtime(settings, create=True)
    except (MasterKeyError, SchemaError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        token = await ensure_admin_token(rt)
        if token:
            announce_bootstrap_token(token, settings.data_dir)
        app = KeybrakeApp(rt)
        app.stop_hooks.append(listeners.close)  # removes a unix socket file on a clean stop
        for lst in listeners.all:
            logs.event(logging.getLogger("keybrake"), "listening", listener=lst.role, address=lst.address,
                       max_connections=lst.limit)  # fmt: skip
            if lst.role == "admin" and lst.address.startswith("http"):
                click.echo(f"web console: {lst.address}/console (sign in with an admin token)", err=True)
        server = KeybrakeServer(server_config(app, settings, listeners), on_stop=app.begin_stop)
        # Everything built so far (modules, the runtime, the app) lives as long as the process:
        # moved out of the collector's sight, a full collection no longer walks ~100k long-lived
        # objects on the request path (bench/README.md, the speed work's profile).
        gc.collect()
        gc.freeze()
        logs.event(logging.getLogger("keybrake"), "heap frozen", objects=gc.get_freeze_count())
        await server.serve(sockets=listeners.sockets)
        if not server.started:
            raise click.ClickException("keybrake could not start (see the log above)")
    finally:
        await rt.store.close()
