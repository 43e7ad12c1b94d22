"""A TCP relay a test controls: it forwards bytes both ways until `cut()`, then silently stops
(no RST, no FIN: the sockets stay open, the kernel still ACKs what fits in its buffers — a
partition behind a middlebox), until `heal()`. Used between a replica and its PostgreSQL."""

from __future__ import annotations

import select
import socket
import threading
import time


class SilentRelay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listen = socket.socket()
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind(("127.0.0.1", 0))
        self._listen.listen(128)
        self.port = self._listen.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._spawn(self._accept)

    def cut(self) -> None:
        """Stop forwarding, silently: nothing is closed, nothing is refused."""
        self._open.clear()

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self._open.set()
        for s in [self._listen, *self._socks]:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> SilentRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            self._spawn(self._connect, client)

    def _connect(self, client: socket.socket) -> None:
        self._socks.append(client)
        while not self._open.is_set() and not self._stop.is_set():
            time.sleep(0.01)  # a new connection during the cut hangs, unanswered
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._socks.append(server)
        self._spawn(self._pump, client, server)
        self._spawn(self._pump, server, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._stop.is_set():
            if not self._open.is_set():
                time.sleep(0.01)  # not reading: the bytes wait in the kernel's buffers
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if not self._open.is_set():  # cut while this chunk was in hand: it waits for the heal
                    while not self._open.is_set() and not self._stop.is_set():
                        time.sleep(0.01)
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
