"""An HTTP relay in front of a real server, for injecting network faults into real traffic.

Requests pass through unchanged, except those a rule picks: ``hold`` keeps the first
matching request waiting (and drops it when released), ``refuse`` answers every
matching request with a 503, as an overloaded or half-dead server would.
"""

from __future__ import annotations

import http.client
import http.server
import re
import threading

__all__ = ["Relay"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


class Relay:
    def __init__(self, upstream: str, hold: str | None = None, refuse: str | None = None,
                 methods: tuple[str, ...] = ("PUT", "POST", "PATCH", "DELETE")) -> None:
        host, port = upstream.rsplit("//", 1)[1].rstrip("/").split(":")
        self.hold = re.compile(hold) if hold else None
        self.refuse = re.compile(refuse) if refuse else None
        self.methods = methods
        self.arrived, self.release = threading.Event(), threading.Event()
        self.refused: list[str] = []
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                picked = self.command in relay.methods
                if picked and relay.refuse is not None and relay.refuse.search(self.path):
                    relay.refused.append(f"{self.command} {self.path}")
                    message = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected fault"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                if picked and relay.hold is not None and not relay.arrived.is_set() and relay.hold.search(self.path):
                    relay.arrived.set()
                    relay.release.wait(120)
                    self.close_connection = True
                    return
                upstream_conn = http.client.HTTPConnection(host, int(port), timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream_conn.request(self.command, self.path, body=body,
                                      headers={**headers, "Host": self.headers["Host"]})
                response = upstream_conn.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream_conn.close()

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
