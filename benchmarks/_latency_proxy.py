"""A loopback HTTP proxy that adds a fixed delay to every request: a far S3 endpoint, on this machine.

RunPod's S3 API answers in tens of milliseconds; moto's server on loopback in
well under one. Put this proxy in front of moto and every request costs what
it would over the network (``delay`` seconds, paid once per request, before
it is forwarded), while requests in flight at once wait side by side, as they
would on a real link. It counts what went through, so a benchmark can print
requests (and listing pages) per poll from the wire, not from the client.

It speaks HTTP/1.1 with keep-alive to the client (boto3 reuses its
connections, as it would against RunPod) and opens one upstream connection per
client connection.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import socket
import threading
import time
from typing import Self
from urllib.parse import parse_qs, urlsplit

#: Headers that belong to one hop and are not forwarded.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"})


def operation(method: str, target: str, headers: http.client.HTTPMessage | dict[str, str]) -> str:
    """The S3 operation a request is (``ListObjectsV2``, ``GetObject``, ...), from its method and query alone."""
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    parts = [p for p in urlsplit(target).path.split("/") if p]
    if method == "GET" and query.get("list-type") == ["2"]:
        return "ListObjectsV2"
    if method == "GET":
        return "GetObject" if len(parts) > 1 else "ListObjects"
    if method == "HEAD":
        return "HeadObject" if len(parts) > 1 else "HeadBucket"
    if method == "PUT":
        return "PutObject" if len(parts) > 1 else "CreateBucket"
    if method == "DELETE":
        return "DeleteObject"
    return method


class LatencyProxy:
    """Forward every request to ``upstream`` after ``delay`` seconds; count requests by S3 operation.

    Use as a context manager; :attr:`url` is the endpoint to give boto3, and
    :attr:`counts` the requests seen since the last :meth:`reset`.
    """

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream = urlsplit(upstream)
        self.delay = delay
        self.counts: collections.Counter[str] = collections.Counter()
        self.in_flight_peak = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def reset(self) -> None:
        """Forget what was counted so far."""
        with self._lock:
            self.counts.clear()
            self.in_flight_peak = 0

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def _enter(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1
            self._in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3 expects of S3
            upstream_conn: http.client.HTTPConnection | None = None

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: with Nagle's algorithm on, the client's
                # delayed ACK would hold the body ~40 ms, a latency of the proxy's own on every request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: object) -> None:
                return

            def _upstream(self) -> http.client.HTTPConnection:
                if self.upstream_conn is None:
                    conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                    conn.connect()
                    assert conn.sock is not None
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as above, upstream
                    self.upstream_conn = conn
                return self.upstream_conn

            def _forward(self) -> None:
                proxy._enter(operation(self.command, self.path, self.headers))
                try:
                    time.sleep(proxy.delay)  # the network's round trip, paid once per request
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length else None
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    try:
                        conn = self._upstream()
                        conn.request(self.command, self.path, body=body, headers=headers)
                        response = conn.getresponse()
                    except (http.client.HTTPException, OSError):
                        self._upstream().close()  # a stale keep-alive connection upstream: once more, fresh
                        self.upstream_conn = None
                        conn = self._upstream()
                        conn.request(self.command, self.path, body=body, headers=headers)
                        response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    proxy._leave()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
