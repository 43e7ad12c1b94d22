"""A raw TCP webhook receiver that can go silent: accepts, reads the request, and never answers.

`mode` is "ok" (answer 200 and close) or "silent" (keep the connection open, say nothing, until
the receiver stops or the client gives up). Every request read is recorded with its arrival time
(time.monotonic()) and its X-Keybrake-Event-Id, whatever the mode.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Hit:
    at: float
    event_id: str
    body: dict[str, Any]
    answered: bool


class RawReceiver:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.hits: list[Hit] = []
        self._stop = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    headers = {}
                    for line in head.decode("latin-1").split("\r\n")[1:]:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                    want = int(headers.get("content-length", "0"))
                    while len(body) < want:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        body += chunk
                except OSError:
                    return
                silent = outer.mode == "silent"
                outer.hits.append(Hit(time.monotonic(), headers.get("x-keybrake-event-id", ""),
                                      json.loads(body or b"null"), not silent))  # fmt: skip
                if silent:
                    outer._stop.wait(60)  # accepted, never answered
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RawReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
