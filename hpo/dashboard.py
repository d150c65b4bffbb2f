"""optuna-dashboard over a study's storage, beside a live controller.

The journal on the volume is opened as a *reader*: the controller holds the
study's lease and is the journal's only writer, so the dashboard must never
append to it. A reader backend looks for new segments inside ``read_logs``
at most every :data:`REFRESH_INTERVAL` seconds, and Optuna's
``JournalStorage`` calls ``read_logs`` at the start of every read, so the
page shows new trials and reports a couple of seconds after the controller
flushes them, with no refresh loop of our own. A study with ``storage:`` (an
RDB URL) is served from that database instead.

The dashboard's editing actions (notes, deleting a study) fail on a journal
study, because the reader refuses appends: that is intended. On an RDB study
they work, as with a plain ``optuna-dashboard <url>``.

The server is the standard library's ``wsgiref`` with one thread per
request: a browser loads the page's bundle and several API calls in parallel,
and optuna-dashboard's own ``run_server`` (plain ``wsgiref``) answers them one
at a time. It needs no new dependency, reports a port in use when it binds
(before anything is printed), and stops cleanly from another thread.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import sys
from collections.abc import Callable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import WSGIApplication

import optuna_dashboard  # type: ignore[import-untyped]  # ships no type hints
from optuna.storages import BaseStorage, JournalStorage, RDBStorage

from hpo.config import StudyConfig
from hpo.controller import open_study_volume
from hpo.errors import HpoError
from hpo.journal import VolumeJournalBackend

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 2.0
"""Seconds between a reader's looks for new journal segments.

The page asks for the study every 10 s on its own ("Live Update"); a reload asks at
once. 2 s keeps a flush from waiting much longer than that, and is one GET per look.
"""

DASHBOARD_PATH = "/dashboard/"


def open_dashboard_storage(
    config: StudyConfig, *, cache_dir: Path | None = None, refresh_interval: float = REFRESH_INTERVAL
) -> BaseStorage:
    """The study's Optuna storage as the dashboard sees it: the journal as a reader, or the study's database.

    Args:
        config: The study.
        cache_dir: The journal's local cache folder (default ``$HPO_CACHE_DIR`` or ``~/.cache/runpod-hpo``).
        refresh_interval: How often the journal reader looks for new segments, in seconds.
    """
    if config.storage:
        try:
            return RDBStorage(config.storage)
        except Exception as exc:  # SQLAlchemy's and Optuna's errors have no common base worth naming
            raise HpoError(f"study {config.name!r}: cannot open storage {_redact(config.storage)}: {exc}") from exc
    volume = open_study_volume(config)
    # writer=False: the controller holds the lease and is the journal's only writer.
    backend = VolumeJournalBackend(
        volume, config.name, writer=False, cache_dir=cache_dir, refresh_interval=refresh_interval
    )
    # The server answers requests in parallel threads; JournalStorage calls its backend only under
    # its own lock, so the backend (which is not thread-safe) sees one call at a time.
    return JournalStorage(backend)


def dashboard_app(storage: BaseStorage) -> WSGIApplication:
    """optuna-dashboard's WSGI application over ``storage`` (served under ``/dashboard/``)."""
    return optuna_dashboard.wsgi(storage)


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, logging requests through ``logging`` rather than printing each one."""

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class DashboardServer(socketserver.ThreadingMixIn, WSGIServer):
    """A ``wsgiref`` server answering each request in its own thread.

    Daemon threads, so Ctrl-C never waits for a browser that keeps a
    connection open.
    """

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            # A browser that navigates away mid-response; nothing went wrong here.
            log.debug("client %s went away: %s", client_address, exc)
            return
        log.warning("dashboard request from %s failed", client_address, exc_info=exc)


class _DashboardServer6(DashboardServer):
    address_family = socket.AF_INET6


def make_server(app: WSGIApplication, host: str, port: int) -> DashboardServer:
    """Bind a threaded WSGI server for ``app`` on ``host:port`` (port 0: any free port).

    Raises:
        HpoError: The port is in use, or the address cannot be bound.
    """
    server_class = _DashboardServer6 if ":" in host else DashboardServer
    try:
        server = server_class((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HpoError(f"cannot serve the dashboard on {_hostport(host, port)}: the port is in use; pick another with --port") from None
        reason = exc.strerror or str(exc)
        raise HpoError(f"cannot serve the dashboard on {_hostport(host, port)}: {reason}") from None
    server.set_app(app)
    return server


def dashboard_url(host: str, port: int) -> str:
    """The address a browser opens, e.g. ``http://127.0.0.1:8080/dashboard/``."""
    return f"http://{_hostport(host, port)}{DASHBOARD_PATH}"


def serve_dashboard(
    config: StudyConfig,
    *,
    host: str,
    port: int,
    ready: Callable[[str], None] | None = None,
    cache_dir: Path | None = None,
) -> None:
    """Serve optuna-dashboard on the study's storage until Ctrl-C.

    Args:
        config: The study.
        host: The address to listen on (keep 127.0.0.1 unless the network is trusted: the
            dashboard has no authentication).
        port: The port to listen on; 0 picks a free one.
        ready: Called with the dashboard's URL once the server is listening.
        cache_dir: The journal's local cache folder (default ``$HPO_CACHE_DIR`` or ``~/.cache/runpod-hpo``).

    Raises:
        HpoError: The storage cannot be opened or the port cannot be bound.
    """
    storage = open_dashboard_storage(config, cache_dir=cache_dir)
    try:
        storage.get_study_id_from_name(config.name)
    except KeyError:
        # Still serve: the reader picks the study up as soon as the controller creates it.
        log.warning("study %r has no trials yet; it shows up once `hpo run --study %s` starts", config.name, config.name)
    server = make_server(dashboard_app(storage), host, port)
    try:
        if ready is not None:
            ready(dashboard_url(host, server.server_address[1]))
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the dashboard is meant to stop
    finally:
        server.server_close()


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(url: str) -> str:
    """Hide a password in a database URL before it appears in a message."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{tail}"
