"""A counting TCP relay between a client (Keybrake) and PostgreSQL: round trips, statements,
commits and bytes, read from the PostgreSQL v3 protocol on the wire (not by wrapping a driver).

    relay = PgWireRelay(5432)          # listens on 127.0.0.1:<relay.port>, forwards to 127.0.0.1:5432
    relay.start()                      # runs its own event loop on a daemon thread
    url = relay.rewrite_url("postgresql://postgres@127.0.0.1:5432/db")
    before = relay.totals()            # ... traffic ...
    delta = relay.totals() - before    # WireCounts; .as_dict() for JSON
    relay.stop()

or as a process of its own (what `run_bench.py --pg-wire` does, so that the relay's CPU stays out
of the load generator): `python bench/pg_wire.py --port P --control-port C`, counters read with
`remote_totals(C)` / `remote_json(C)`.

Framing (https://www.postgresql.org/docs/current/protocol-message-formats.html): the client's
first message has no type byte (Int32 length, Int32 code). An SSLRequest (code 80877103) or
GSSENCRequest (80877104) is answered 'N' by the relay itself, so the session stays plaintext and
parseable; the client then sends its StartupMessage, which is relayed as it is. Every later
message, both ways, is a 1-byte type plus an Int32 length that counts itself but not the type.

Definitions (all counted per connection and summed over connections):

- round trip: a client burst the client then waits on. The client is *idle* after startup and
  whenever the server has sent a ReadyForQuery ('Z') for every Query ('Q') and Sync ('S') the
  client sent. The first client message sent while idle starts a round trip; the connection is
  busy until the ReadyForQuery that leaves nothing outstanding. So one simple-protocol statement
  is one round trip, a Parse/Bind/Execute/Sync group is one, and a pipeline of several Syncs
  sent before the first answer arrives is one. Terminate ('X') starts none (nothing is awaited).
  The startup handshake and authentication are not round trips (see `connections`). Limitation:
  an exchange that waits on a Flush ('H') instead of a Sync is folded into the next Sync's.
- ready_for_query: the server's ReadyForQuery messages after startup (one per Query or Sync,
  pipelined or not): an upper bound of round trips.
- statements: client Query ('Q') plus Execute ('E') messages. A Query holding several
  semicolon-separated statements counts once.
- commits: transactions committed, as the wire shows them: (a) each CommandComplete tagged
  "COMMIT" (explicit COMMIT or END; a COMMIT of a failed transaction is tagged "ROLLBACK" and is
  not counted; "COMMIT PREPARED" counts too); plus (b) each implicit (autocommit) transaction —
  one or more commands completed outside an explicit block, ended by ReadyForQuery status 'I'
  with no ErrorResponse. Read-only ones count too: the wire cannot tell a SELECT that writes
  (a function such as `keybrake_reserve`) from one that does not, so this is every committed
  transaction (what `pg_stat_database.xact_commit` counts) — an upper bound on WAL flushes.
- bytes_to_server / bytes_to_client: bytes relayed each way (startup included).
- connections: client connections accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import socket
import struct
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
_CHUNK = 65536


@dataclass
class WireCounts:
    """Counters of one connection or of a sum of them; see the module docstring for definitions."""

    connections: int = 0
    round_trips: int = 0
    ready_for_query: int = 0
    statements: int = 0
    commits: int = 0
    bytes_to_server: int = 0
    bytes_to_client: int = 0

    def __add__(self, other: WireCounts) -> WireCounts:
        a, b = dataclasses.astuple(self), dataclasses.astuple(other)
        return WireCounts(*(x + y for x, y in zip(a, b, strict=True)))

    def __sub__(self, other: WireCounts) -> WireCounts:
        a, b = dataclasses.astuple(self), dataclasses.astuple(other)
        return WireCounts(*(x - y for x, y in zip(a, b, strict=True)))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass
class _Frames:
    """Splits a byte stream into (type, body) messages; `typed=False` for the client's first one."""

    typed: bool = True
    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out: list[tuple[bytes, bytes]] = []
        while True:
            head = 5 if self.typed else 4
            if len(self.buf) < head:
                return out
            kind = bytes(self.buf[:1]) if self.typed else b""
            (length,) = struct.unpack_from("!i", self.buf, head - 4)
            end = head - 4 + length
            if length < 4 or len(self.buf) < end:
                return out
            body = bytes(self.buf[head:end])
            out.append((kind, body))
            del self.buf[:end]
            if not self.typed:  # after an SSLRequest/GSSENCRequest, the StartupMessage is untyped too
                self.typed = body[:4] not in (struct.pack("!i", SSL_REQUEST), struct.pack("!i", GSSENC_REQUEST))


@dataclass
class ConnState:
    """One client connection: its counters and the protocol state they depend on."""

    counts: WireCounts = field(default_factory=lambda: WireCounts(connections=1))
    started: bool = False  # StartupMessage seen
    busy: bool = False  # a round trip is open
    outstanding: int = 0  # Query/Sync messages not yet answered by ReadyForQuery
    in_block: bool = False  # inside an explicit transaction block
    implicit_done: bool = False  # the current implicit transaction completed a command

    def client_message(self, kind: bytes, body: bytes) -> bytes | None:
        """Count one client message; the bytes to answer the client with instead of relaying it
        (an SSLRequest/GSSENCRequest gets b"N"), or None to relay it."""
        if not self.started:
            code = struct.unpack_from("!i", body)[0] if len(body) >= 4 else 0
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                return b"N"
            self.started = True
            return None
        if kind != b"X" and not self.busy:
            self.busy = True
            self.counts.round_trips += 1
        if kind in (b"Q", b"S"):
            self.outstanding += 1
        if kind in (b"Q", b"E"):
            self.counts.statements += 1
        return None

    def server_message(self, kind: bytes, body: bytes) -> None:
        """Count one server message."""
        if kind == b"C":
            tag = body.rstrip(b"\0").decode("ascii", "replace")
            self._command_complete(tag)
        elif kind == b"E":
            self.implicit_done = False
        elif kind == b"Z":
            status = body[:1]
            if self.busy or self.outstanding:
                self.counts.ready_for_query += 1
            self.outstanding = max(0, self.outstanding - 1)
            if status == b"I" and self.implicit_done:
                self.counts.commits += 1
            self.implicit_done = False
            self.in_block = status in (b"T", b"E")
            if self.outstanding == 0:
                self.busy = False

    def _command_complete(self, tag: str) -> None:
        words = tag.split()
        first = words[0] if words else ""
        if first in ("BEGIN", "START"):
            self.in_block = True
        elif first == "COMMIT":  # also ends an implicit transaction ("INSERT ...; COMMIT" in one Query)
            self.counts.commits += 1
            self.in_block = self.implicit_done = False
        elif first == "ROLLBACK":
            self.in_block = False
        elif not self.in_block:
            self.implicit_done = True


class PgWireRelay:
    """Relays 127.0.0.1:<port> to PostgreSQL at target_host:target_port, counting as it goes.

    Either on its own asyncio loop on a daemon thread (`start()`, `stop()`: a synchronous caller
    keeps it up across several of its own event loops), or on the running loop (`open()`, as
    `main` does in a process of its own). `totals()` is safe to call from any thread at any time.
    """

    def __init__(self, target_port: int = 5432, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.conns: list[ConnState] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, port: int = 0) -> int:
        """Listen on 127.0.0.1:`port` (0: any free one) on the running loop; returns the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def start(self) -> int:
        """Listen on 127.0.0.1:0 on a thread of its own; returns the port. Raises OSError if it
        cannot listen."""
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="pg-wire-relay", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self.port

    def stop(self) -> None:
        """Close the listener and every relayed connection; join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    def __enter__(self) -> PgWireRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def totals(self) -> WireCounts:
        """The sum over every connection so far (open and closed)."""
        total = WireCounts()
        for c in list(self.conns):
            total = total + c.counts
        return total

    def as_json(self) -> str:
        """{"totals": {...}, "per_connection": [{...}, ...]} as JSON."""
        doc: dict[str, Any] = {
            "totals": self.totals().as_dict(),
            "per_connection": [c.counts.as_dict() for c in list(self.conns)],
        }
        return json.dumps(doc)

    def rewrite_url(self, url: str) -> str:
        """A libpq-style postgresql:// URL with its host and port replaced by the relay's."""
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        state = ConnState()
        self.conns.append(state)
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.close()
            self._tasks.discard(task)
            return
        try:
            pumps = [
                asyncio.ensure_future(self._client_to_server(state, c_reader, c_writer, s_writer)),
                asyncio.ensure_future(self._server_to_client(state, s_reader, c_writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # stop(): close quietly
                pass
            finally:
                for p in pumps:
                    p.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for w in (c_writer, s_writer):
                w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _client_to_server(
        state: ConnState, reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter, s_writer: asyncio.StreamWriter
    ) -> None:
        frames = _Frames(typed=False)
        while data := await reader.read(_CHUNK):
            out = bytearray()  # whole messages only; a partial one waits in `frames`
            for kind, body in frames.feed(data):
                answer = state.client_message(kind, body)
                if answer is None:
                    out += kind + struct.pack("!i", len(body) + 4) + body
                else:
                    c_writer.write(answer)
                    await c_writer.drain()
            if out:
                state.counts.bytes_to_server += len(out)
                s_writer.write(out)
                await s_writer.drain()

    @staticmethod
    async def _server_to_client(state: ConnState, reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        frames = _Frames(typed=True)
        while data := await reader.read(_CHUNK):
            for kind, body in frames.feed(data):
                state.server_message(kind, body)
            state.counts.bytes_to_client += len(data)
            c_writer.write(data)
            await c_writer.drain()


# -- as a process of its own (the bench: the relay's CPU stays out of the load generator) --------


def remote_json(control_port: int, timeout: float = 5.0) -> dict[str, Any]:
    """The counters of a relay process, read from its control port (see `main`): {"totals": {...},
    "per_connection": [...]}. Raises OSError if it does not answer, ValueError on bad JSON."""
    with socket.create_connection(("127.0.0.1", control_port), timeout=timeout) as conn:
        chunks = []
        while chunk := conn.recv(_CHUNK):
            chunks.append(chunk)
    doc: dict[str, Any] = json.loads(b"".join(chunks))
    return doc


def remote_totals(control_port: int) -> WireCounts:
    """The summed counters of a relay process (see `remote_json`)."""
    return WireCounts(**remote_json(control_port)["totals"])


async def _run(relay: PgWireRelay, port: int, control_port: int) -> None:
    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(relay.as_json().encode())
        await writer.drain()
        writer.close()

    await relay.open(port)
    control = await asyncio.start_server(answer, "127.0.0.1", control_port)
    print(f"pg-wire relay 127.0.0.1:{relay.port} -> {relay.target[0]}:{relay.target[1]}", flush=True)
    async with control:
        await control.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """`python bench/pg_wire.py --port P --control-port C [--target-host H] [--target-port 5432]`:
    relay 127.0.0.1:P to PostgreSQL; each connection to 127.0.0.1:C gets the counters as JSON.
    Runs until SIGTERM or SIGINT."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--target-host", default="127.0.0.1")
    p.add_argument("--target-port", type=int, default=5432)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    relay = PgWireRelay(args.target_port, args.target_host)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with contextlib.suppress(KeyboardInterrupt), runner:
        runner.run(_run(relay, args.port, args.control_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
