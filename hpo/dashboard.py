"""optuna-dashboard over a study's storage, beside a live controller, read-only.

The journal on the volume is opened as a *reader*: the controller holds the
study's lease and is the journal's only writer, so the dashboard must never
append to it. A reader backend looks for new segments inside ``read_logs``
at most every :data:`REFRESH_INTERVAL` seconds, and Optuna's
``JournalStorage`` calls ``read_logs`` at the start of every read, so the
page shows new trials and reports a couple of seconds after the controller
flushes them, with no refresh loop of our own. A study with ``storage:`` (an
RDB URL) is served from that database instead.

The dashboard has no login, so it changes nothing, whatever the storage: a
plain ``optuna-dashboard sqlite:///...`` lets anyone who reaches the port
delete the study (``DELETE /api/studies/1``). Here, three layers:

- every request but GET and HEAD is answered 405 before optuna-dashboard sees
  it (its page loads with GETs only). The answer is a JSON ``reason``, which
  the page shows beside the button that asked: "read-only: the study is
  driven by hpo run, ..." and what was refused (a note, failing a trial,
  deleting the study), so the editing buttons stay but say why they do
  nothing, and nothing reaches the terminal but a debug line;
- the storage it is handed refuses every write (:class:`ReadOnlyStorage`), in
  case a future optuna-dashboard writes from a GET. Its error is also a
  bottle ``HTTPError``, so optuna-dashboard answers it 403 with the same kind
  of reason rather than "internal server error" and a traceback on stderr;
- the ``Host`` header must name the address the server was bound to (and, on
  loopback, ``localhost``/``127.0.0.1``/``[::1]``): a web page whose domain is
  made to resolve to 127.0.0.1 ("DNS rebinding") would otherwise read the
  study from the user's browser. The port is not compared: an SSH tunnel may
  forward another local port, and rebinding is about the name.

The server is the standard library's ``wsgiref`` with one thread per
request: a browser loads the page's bundle and several API calls in parallel,
and optuna-dashboard's own ``run_server`` (plain ``wsgiref``) answers them one
at a time. It needs no new dependency, reports a port in use when it binds
(before anything is printed), and stops cleanly from another thread.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import re
import socket
import socketserver
import sys
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import optuna_dashboard  # ships no type hints: ignore_missing_imports in pyproject.toml
from bottle import HTTPError  # type: ignore[import-untyped]  # optuna-dashboard's web framework
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.config import StudyConfig
from hpo.controller import open_study_volume
from hpo.errors import HpoError
from hpo.journal import CheckedJournalStorage, VolumeJournalBackend

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy  # Optuna exports no public name for it

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
    return CheckedJournalStorage(backend, config.name)  # a log Optuna cannot replay: one line, no traceback


READ_ONLY = "read-only: the study is driven by hpo run, and this dashboard only shows it"
"""How every refusal starts: what the user tried is not broken, it is not this dashboard's to do."""


class ReadOnlyError(HpoError, HTTPError):
    """Something tried to write through the dashboard's storage.

    A bottle ``HTTPError`` (403) as well: optuna-dashboard's API views answer
    one with its message as the JSON ``reason`` and log nothing, where any
    other exception becomes "internal server error" and a traceback.
    """

    def __init__(self, message: str) -> None:
        HTTPError.__init__(self, 403, message)
        self.args = (message,)

    def __str__(self) -> str:
        return str(self.args[0])


class ReadOnlyStorage(BaseStorage):
    """An Optuna storage that answers every read from ``inner`` and refuses every write.

    What the dashboard hands optuna-dashboard, whatever the study's storage: the
    WSGI layer already refuses every method that could edit, and this is the
    second lock, on the storage itself.
    """

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    # -- reads, passed through ------------------------------------------------------------------

    def get_all_studies(self) -> list[FrozenStudy]:
        # optuna-dashboard sorts an RDBStorage's studies by id; it cannot see that this is one.
        return sorted(self.inner.get_all_studies(), key=lambda study: study._study_id)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_system_attrs(study_id)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self.inner.get_trial(trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self.inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def get_n_trials(self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None) -> int:
        return self.inner.get_n_trials(study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self.inner.get_best_trial(study_id)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self.inner.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self.inner.get_trial_number_from_id(trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self.inner.get_trial_param(trial_id, param_name)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self.inner.get_trial_params(trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.inner.get_trial_user_attrs(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self.inner.get_trial_system_attrs(trial_id)

    def remove_session(self) -> None:
        self.inner.remove_session()

    # -- writes, refused ------------------------------------------------------------------------

    def _refuse(self, what: str) -> ReadOnlyError:
        log.warning("the dashboard refused to %s: it is read-only", what)
        return ReadOnlyError(f"{READ_ONLY}; it does not {what}")

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        raise self._refuse("create studies")

    def delete_study(self, study_id: int) -> None:
        raise self._refuse("delete studies")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        raise self._refuse("set study attributes")

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        raise self._refuse("set study attributes (notes, plots)")

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        raise self._refuse("create trials")

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        raise self._refuse("set parameters")

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        raise self._refuse("change a trial's state or values")

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        raise self._refuse("report values")

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        raise self._refuse("set trial attributes")

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        raise self._refuse("set trial attributes")


READ_METHODS = frozenset({"GET", "HEAD"})
"""The only HTTP methods the dashboard answers: optuna-dashboard's page loads with GETs alone."""

REFUSALS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("PUT", re.compile(r"/api/studies/\d+(/\d+)?/note"),
     "notes are not saved: hpo run is the only writer of the study's journal, and the dashboard writes nothing"),
    ("POST", re.compile(r"/api/trials/\d+/tell"),
     "hpo run sets each trial's state (to stop trials, stop hpo run: Ctrl-C)"),
    ("POST", re.compile(r"/api/studies/\d+/\d+/skip"), "hpo run decides which trials run"),
    ("POST", re.compile(r"/api/trials/\d+/user-attrs"), "hpo run sets the trials' attributes"),
    ("DELETE", re.compile(r"/api/studies/\d+"), "a study is not deleted from here"),
    ("POST", re.compile(r"/api/studies/\d+/rename"), "a study is not renamed from here"),
    ("POST", re.compile(r"/api/studies"), "studies are created by hpo run, from studies.yaml"),
    ("*", re.compile(r"/api/artifacts/.*"), "artifacts are not uploaded or deleted here"),
)
"""What the page's editing buttons ask for, and why each is refused: (method, path, reason).

The routes are optuna-dashboard's (0.21): notes, "Fail trial", "Skip", user
attributes, deleting, renaming and creating studies, artifacts. Anything else
that is not a GET gets the generic reason.
"""


def refusal(method: str, path: str) -> str:
    """The reason a request that would edit the study is refused, for the page to show."""
    path = path.rstrip("/")
    for wanted, pattern, why in REFUSALS:
        if wanted in (method, "*") and pattern.fullmatch(path):
            return f"{READ_ONLY}; {why}"
    return f"{READ_ONLY}; {method} is refused (it answers GET and HEAD only)"


def dashboard_app(storage: BaseStorage) -> WSGIApplication:
    """optuna-dashboard's WSGI application over ``storage`` (served under ``/dashboard/``), read-only.

    The storage is wrapped in :class:`ReadOnlyStorage`, and every request but
    GET and HEAD is answered 405 before optuna-dashboard sees it.
    """
    if not isinstance(storage, ReadOnlyStorage):
        storage = ReadOnlyStorage(storage)
    return read_only(optuna_dashboard.wsgi(storage))


def read_only(app: WSGIApplication) -> WSGIApplication:
    """Wrap ``app`` so that only GET and HEAD reach it; anything else is 405 (``Allow: GET, HEAD``) with a reason.

    The refusal is expected, not an error: it is logged at debug level, so
    the terminal the dashboard runs in stays quiet.
    """

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method not in READ_METHODS:
            path = str(environ.get("PATH_INFO", ""))
            log.debug("refused %s %s: the dashboard is read-only", method, path[:200])
            return _answer(start_response, "405 Method Not Allowed", refusal(method, path), [("Allow", "GET, HEAD")])
        return app(environ, start_response)

    return guarded


def allowed_host_names(host: str, extra: Iterable[str] = ()) -> tuple[frozenset[str], bool]:
    """The ``Host`` names a server bound to ``host`` answers, and whether any IP literal is accepted.

    Bound to loopback: that address, ``localhost``, ``127.0.0.1`` and ``::1``.
    Bound to one other address or name: that, and this machine's host names.
    Bound to every address (``0.0.0.0``, ``::``): any IP literal (a literal
    address cannot be rebound), ``localhost`` and this machine's host names.
    ``extra`` adds names (a reverse proxy's, say).
    """
    bound = _host_name(host)
    names = {bound, *(_host_name(name) for name in extra)}
    try:
        address = ipaddress.ip_address(bound)
    except ValueError:
        address = None
    loopback = bound == "localhost" or (address is not None and address.is_loopback)
    any_ip = address is not None and address.is_unspecified
    if loopback or any_ip:
        names |= {"localhost", "127.0.0.1", "::1"}
    if not loopback:
        names |= {_host_name(socket.gethostname()), _host_name(socket.getfqdn())}
    names.discard("")
    return frozenset(names), any_ip


def host_guard(app: WSGIApplication, names: Container[str], *, any_ip: bool = False) -> WSGIApplication:
    """Wrap ``app`` so that a request whose ``Host`` is not in ``names`` is answered 403.

    A request without ``Host`` (HTTP/1.0) passes: a browser, which is what a
    DNS-rebinding page runs in, always sends one.
    """

    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_HOST")
        if header is not None:
            name = _host_name(str(header))
            if name not in names and not (any_ip and _is_ip(name)):
                log.warning("refused a request for host %r: not an address this dashboard serves", str(header)[:100])
                reason = (
                    f"host {str(header)[:100]!r} is not served here (a DNS-rebinding guard); open the "
                    "dashboard by the address it printed, or pass --allow-host NAME"
                )
                return _answer(start_response, "403 Forbidden", reason)
        return app(environ, start_response)

    return guarded


def _answer(
    start_response: StartResponse, status: str, reason: str, headers: Sequence[tuple[str, str]] = ()
) -> list[bytes]:
    """A short JSON refusal: optuna-dashboard's page shows an answer's ``reason``."""
    body = json.dumps({"reason": reason}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def _host_name(header: str) -> str:
    """The name in a ``Host`` header or an address: lowercase, no port, no brackets, no final dot."""
    text = header.strip().lower()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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


def make_server(
    app: WSGIApplication, host: str, port: int, *, allow_hosts: Iterable[str] = ()
) -> DashboardServer:
    """Bind a threaded WSGI server for ``app`` on ``host:port`` (port 0: any free port).

    The server answers only requests whose ``Host`` names the bound address
    (see :func:`allowed_host_names`; ``allow_hosts`` adds names).

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
    names, any_ip = allowed_host_names(host, allow_hosts)
    server.set_app(host_guard(app, names, any_ip=any_ip))
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
    allow_hosts: Iterable[str] = (),
) -> None:
    """Serve optuna-dashboard on the study's storage, read-only, until Ctrl-C.

    Args:
        config: The study.
        host: The address to listen on (keep 127.0.0.1 and reach it through an SSH tunnel:
            the dashboard has no authentication, and shows every trial to whoever reaches it).
        port: The port to listen on; 0 picks a free one.
        ready: Called with the dashboard's URL once the server is listening.
        cache_dir: The journal's local cache folder (default ``$HPO_CACHE_DIR`` or ``~/.cache/runpod-hpo``).
        allow_hosts: More names the ``Host`` header may give (see :func:`allowed_host_names`).

    Raises:
        HpoError: The storage cannot be opened or the port cannot be bound.
    """
    storage = open_dashboard_storage(config, cache_dir=cache_dir)
    try:
        storage.get_study_id_from_name(config.name)
    except KeyError:
        # Still serve: the reader picks the study up as soon as the controller creates it.
        log.warning("study %r has no trials yet; it shows up once `hpo run --study %s` starts", config.name, config.name)
    server = make_server(dashboard_app(storage), host, port, allow_hosts=allow_hosts)
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
