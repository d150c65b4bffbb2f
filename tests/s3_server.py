"""A real S3 server on loopback for the tests: moto in server mode, and a fault proxy.

moto's ``ThreadedMotoServer`` serves S3 over HTTP from a thread of the test
process, on a free loopback port; each pytest-xdist worker starts its own.
The code under test talks to it through a real boto3 client and real HTTP,
nothing is patched. RunPod has no CreateBucket, so tests create buckets (the
stand-in for network volumes) with a plain boto3 client, as an administrator
would create a volume in the console.

:class:`FaultProxy` sits between a client and moto to play what moto does not:
a gateway answering 502 under load, an S3 API refusing unknown access keys,
a listing that repeats its continuation token.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

#: Credentials for the fake server; shaped like RunPod's (user id, ``rps_`` secret).
ACCESS_KEY = "user_2testaccesskey"
SECRET_KEY = "rps_TESTSECRET0123456789abcdefSECRET"
#: What tests export for the code under test, which reads RunPod's variables.
CREDENTIALS_ENV = {"RUNPOD_S3_ACCESS_KEY": ACCESS_KEY, "RUNPOD_S3_SECRET_KEY": SECRET_KEY}


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yield its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@functools.cache
def admin_client(endpoint: str) -> Any:
    """A plain boto3 client on ``endpoint`` for setting tests up (buckets, odd objects)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
    )


def make_bucket(endpoint: str) -> str:
    """Create a fresh, empty bucket (a network volume stand-in) and return its name."""
    name = f"vol{uuid.uuid4().hex[:12]}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name


@dataclass(frozen=True)
class ProxyRequest:
    """One request as the proxy saw it."""

    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # lower-case names

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def access_key(self) -> str:
        """The access key id in the SigV4 ``Authorization`` header ("" if unsigned)."""
        auth = self.headers.get("authorization", "")
        _, _, rest = auth.partition("Credential=")
        return rest.split("/", 1)[0]


@dataclass(frozen=True)
class Reply:
    """A canned answer the proxy gives instead of forwarding."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def s3_error(status: int, code: str, message: str) -> Reply:
    """An S3-style XML error reply."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"
    ).encode()
    return Reply(status, body, {"Content-Type": "application/xml"})


BAD_GATEWAY = Reply(502, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})


class FaultProxy:
    """A loopback HTTP proxy in front of an S3 endpoint that can answer in its stead.

    Each request is answered, in order of precedence, by the next queued fault
    (:meth:`fail_next`), by ``rule`` when it returns a :class:`Reply`, or by
    the upstream server. ``log`` records ``(method, path, query, status)`` for
    every request, and ``requests`` the requests themselves, so tests can
    assert on what went over the wire (a Range header, a retry).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.rule: Callable[[ProxyRequest], Reply | None] | None = None
        self.log: list[tuple[str, str, str, int]] = []
        self.requests: list[ProxyRequest] = []
        self._faults: list[Reply] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(self, count: int, reply: Reply = BAD_GATEWAY) -> None:
        """Answer the next ``count`` requests with ``reply`` (a 502 by default)."""
        with self._lock:
            self._faults.extend([reply] * count)

    def statuses(self) -> list[int]:
        """The status of every request answered so far, in order."""
        with self._lock:
            return [entry[3] for entry in self.log]

    def _answer(self, request: ProxyRequest, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            self.requests.append(request)
            canned = self._faults.pop(0) if self._faults else None
        if canned is None and self.rule is not None:
            canned = self.rule(request)
        if canned is not None:
            return canned.status, list(canned.headers.items()), canned.body
        connection = http.client.HTTPConnection(self.upstream.netloc, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in {"expect", "connection"}}
            connection.request(request.method, request.target, body=body if body else None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.getheaders(), data
        finally:
            connection.close()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and "Expect: 100-continue" for big PUTs

            def _handle(self) -> None:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    raise NotImplementedError("FaultProxy forwards only bodies with a Content-Length")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = ProxyRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                status, headers, data = proxy._answer(request, body)
                with proxy._lock:  # before replying, so the client never runs ahead of the log
                    proxy.log.append((self.command, request.path, urlsplit(self.path).query, status))
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in {"transfer-encoding", "connection", "content-length", "date", "server"}:
                        self.send_header(name, value)
                # A HEAD reply says the object's length but sends no body.
                length_header = {k.lower(): v for k, v in headers}.get("content-length")
                self.send_header("Content-Length", length_header if self.command == "HEAD" and length_header else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read proxy.log

        return Handler
