"""Bad input at the RunPod seam: RunPod's API answering junk, and requests the fake RunPod must refuse.

The client half serves junk from a tiny loopback HTTP server (``http.server``
in a thread: an HTML page where JSON belongs, a list where an object belongs,
a pod without an id, prices as strings, ...) and holds :class:`RunPodApi` to
one rule: junk is one line naming the endpoint, of the right error class
(:class:`ApiUnavailableError` for reads, which the controller rides out; a
create looks the pod up by name first), never a traceback out of the parser.
A pod that cannot be ours is skipped, and a pod with a status RunPod does not
define is taken as live, each with a warning. A server that never answers,
or answers a byte at a time, costs a call at most its deadline plus one
request timeout.

The fake half holds the fake RunPod to what it must refuse: a pod
environment that would make a local process run something of the request's
choosing, ``/_fake`` control calls without the key or without JSON, and
requests naming another host (DNS rebinding).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from hpo.backends import AttemptRef
from hpo.backends.runpod import PodRequest, RunPodApi, _api, pod_env
from hpo.errors import ApiError, ApiUnavailableError, CloudError, LaunchUnknownError, RequestRejectedError
from hpo.fake_runpod import FakeRunPod

A5000 = "NVIDIA RTX A5000"
NAME = "hpo-s-1-0"
GOOD_POD = {"id": "pod0000000001", "name": NAME, "status": "RUNNING", "gpu": {"id": A5000, "count": 1}, "cost": 0.27}
HTML = (200, "text/html", b"<!DOCTYPE html><html><body>Please log in to the hotel Wi-Fi</body></html>")


def _json(value: Any, status: int = 200) -> tuple[int, str, bytes]:
    return (status, "application/json", json.dumps(value).encode())


# ---------------------------------------------------------------------- a server that answers junk


class JunkServer:
    """A loopback HTTP server answering each ``(method, path)`` with a scripted ``(status, content type, body)``.

    An answer may carry a fourth item, extra headers; a list of answers is
    served in turn (the last one from then on). Paths are matched without
    their query; a route absent from the script answers 404. Every request is
    recorded, so a test can tell what was sent.
    """

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Any] = {}
        self.seen: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                server.seen.append((self.command, path))
                answer = server.answers.get((self.command, path), (404, "application/json", b'{"detail": "nope"}'))
                if isinstance(answer, list):  # answered in turn, the last one from then on
                    answer = answer.pop(0) if len(answer) > 1 else answer[0]
                status, content_type, body, *rest = answer
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (rest[0] if rest else {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def junk_server() -> Iterator[JunkServer]:
    server = JunkServer()
    yield server
    server.close()


@pytest.fixture
def client(junk_server: JunkServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunPodApi]:
    """A client of the junk server: 2 tries a call, no real waits; warnings fresh for each test."""
    junk_server.answers.clear()
    junk_server.seen.clear()
    monkeypatch.setattr(_api, "_WARNED", set())
    api = RunPodApi("k", rest_url=junk_server.url, graphql_base=junk_server.url, attempts=2, sleep=lambda _: None)
    yield api
    api.close()


def _request() -> PodRequest:
    return PodRequest(
        name=NAME, image="ghcr.io/example/trial:1", gpu_type=A5000, env=pod_env("s", AttemptRef(1, 0), "/workspace")
    )


CALLS: dict[str, Callable[[RunPodApi], Any]] = {
    "list": lambda api: api.list_pods(),
    "get": lambda api: api.get_pod("pod0000000001"),
    "terminate": lambda api: api.terminate_pod("pod0000000001"),
    "create": lambda api: api.create_pod(_request()),
    "spot": lambda api: api.create_spot_pod(_request(), 0.2),
    "price": lambda api: api.gpu_price(A5000),
    "spot_prices": lambda api: api.spot_prices(),
    "catalog": lambda api: api.on_demand_prices(),
    "billing": lambda api: api.pod_billing(_api.datetime(2026, 6, 1, tzinfo=_api.UTC)),
}

LIST = ("GET", "/v2/pods")
GET = ("GET", "/v2/pods/pod0000000001")
DELETE = ("DELETE", "/v2/pods/pod0000000001")
CREATE = ("POST", "/v2/pods")
GRAPHQL = ("POST", "/graphql")
CATALOG = ("GET", "/v2/catalog/gpus")
BILLING = ("GET", "/v2/billing/pods")


@dataclass(frozen=True)
class Junk:
    """One junk case: what the server answers, which call meets it, and the one-line error it must become."""

    id: str
    call: str
    answers: dict[tuple[str, str], Any]
    error: type[CloudError]
    says: tuple[str, ...]
    not_error: tuple[type[CloudError], ...] = field(default=())


JUNK: list[Junk] = [
    # -- a read answered with junk: retried like a 5xx, then ApiUnavailableError naming the endpoint
    Junk("list-html-page", "list", {LIST: HTML}, ApiUnavailableError, ("GET /v2/pods", "not JSON", "text/html", "Wi-Fi")),
    Junk("list-broken-json", "list", {LIST: (200, "application/json", b'{"pods": [{"id": ')}, ApiUnavailableError,
         ("GET /v2/pods", "not JSON")),
    Junk("list-a-list-not-an-object", "list", {LIST: _json([GOOD_POD])}, ApiUnavailableError,
         ("GET /v2/pods", "the answer is a list, not an object")),
    Junk("list-pods-not-a-list", "list", {LIST: _json({"pods": {"id": "x"}})}, ApiUnavailableError,
         ("GET /v2/pods", "pods is an object, not a list")),
    Junk("list-pods-missing", "list", {LIST: _json({"items": []})}, ApiUnavailableError,
         ("GET /v2/pods", "pods is null")),
    Junk("list-empty-body", "list", {LIST: (200, "application/json", b"")}, ApiUnavailableError,
         ("GET /v2/pods", "the answer is null")),
    Junk("list-json-nested-too-deep", "list", {LIST: (200, "application/json", b"[" * 200_000)},
         ApiUnavailableError, ("GET /v2/pods", "not JSON")),
    Junk("list-not-utf8", "list", {LIST: (200, "application/json", b'{"pods": ["\xff\xfe"]}')},
         ApiUnavailableError, ("GET /v2/pods", "not JSON")),
    Junk("list-redirect-to-portal", "list", {LIST: (302, "text/html", b"", {"Location": "http://portal.example/"})},
         ApiUnavailableError, ("GET /v2/pods", "redirect to http://portal.example/")),
    Junk("list-500-html", "list", {LIST: (502, "text/html", b"<html>Bad Gateway</html>")}, ApiUnavailableError,
         ("GET /v2/pods: 502",)),
    Junk("get-a-list", "get", {GET: _json([GOOD_POD])}, ApiUnavailableError,
         ("GET /v2/pods/pod0000000001", "a list, not an object")),
    Junk("get-pod-without-id", "get", {GET: _json({k: v for k, v in GOOD_POD.items() if k != "id"})},
         ApiUnavailableError, ("GET /v2/pods/pod0000000001", "no usable id")),
    Junk("get-someone-elses-pod", "get", {GET: _json({**GOOD_POD, "id": "pod0000000002"})}, ApiUnavailableError,
         ("GET /v2/pods/pod0000000001", "got pod 'pod0000000002'")),
    Junk("terminate-html-page", "terminate", {DELETE: HTML}, ApiUnavailableError,
         ("DELETE /v2/pods/pod0000000001", "not JSON")),
    Junk("catalog-gpus-not-a-list", "catalog", {CATALOG: _json({"gpus": "none"})}, ApiUnavailableError,
         ("GET /v2/catalog/gpus", "gpus is a string")),
    Junk("catalog-gpu-a-string", "catalog", {CATALOG: _json({"gpus": [A5000]})}, ApiUnavailableError,
         ("GET /v2/catalog/gpus", "a GPU type is a string")),
    Junk("billing-records-not-a-list", "billing", {BILLING: _json({"records": {}})}, ApiUnavailableError,
         ("GET /v2/billing/pods", "records is an object")),
    Junk("billing-amount-a-string", "billing", {BILLING: _json({"records": [{"podId": "p", "totalAmount": "1.5"}]})},
         ApiUnavailableError, ("GET /v2/billing/pods", "records[0].totalAmount is a string, not a number")),
    Junk("billing-record-without-pod", "billing", {BILLING: _json({"records": [{"totalAmount": 1.5}]})},
         ApiUnavailableError, ("GET /v2/billing/pods", "records[0].podId is null")),
    Junk("billing-amount-nan", "billing",
         {BILLING: (200, "application/json", b'{"records": [{"podId": "p", "totalAmount": NaN}]}')},
         ApiUnavailableError, ("GET /v2/billing/pods", "NaN or infinite")),
    Junk("billing-record-a-list", "billing", {BILLING: _json({"records": [["p", 1.5]]})}, ApiUnavailableError,
         ("GET /v2/billing/pods", "records[0] is a list")),
    Junk("graphql-html-page", "price", {GRAPHQL: HTML}, ApiUnavailableError, ("GraphQL gpuTypes", "not JSON")),
    Junk("graphql-data-a-list", "price", {GRAPHQL: _json({"data": []})}, ApiUnavailableError,
         ("GraphQL gpuTypes", "data is a list")),
    Junk("graphql-data-missing-field", "price", {GRAPHQL: _json({"data": {"pods": []}})}, ApiUnavailableError,
         ("GraphQL gpuTypes", "data has no gpuTypes")),
    Junk("graphql-errors-not-a-list", "price", {GRAPHQL: _json({"errors": "boom", "data": None})},
         ApiUnavailableError, ("GraphQL gpuTypes", "errors is a string")),
    Junk("graphql-error-without-message", "price", {GRAPHQL: _json({"errors": [{"code": 1}], "data": None})},
         ApiUnavailableError, ("GraphQL gpuTypes", "errors[0].message is null")),
    Junk("graphql-gpu-types-an-object", "spot_prices", {GRAPHQL: _json({"data": {"gpuTypes": {"id": A5000}}})},
         ApiUnavailableError, ("GraphQL gpuTypes", "gpuTypes is an object")),
    Junk("graphql-gpu-types-of-strings", "spot_prices", {GRAPHQL: _json({"data": {"gpuTypes": [A5000]}})},
         ApiUnavailableError, ("GraphQL gpuTypes", "a GPU type is a string")),
    # -- refusals whose body is junk: still the class their status means, on one line
    Junk("create-400-errors-a-string", "create", {CREATE: _json({"detail": "bad\nbody", "errors": "x"}, status=400)},
         RequestRejectedError, ("POST /v2/pods: 400 bad body",), not_error=(ApiUnavailableError,)),
    Junk("create-422-html", "create", {CREATE: (422, "text/html", b"<html>\n<h1>nope</h1>\n</html>")},
         RequestRejectedError, ("POST /v2/pods: 422",), not_error=(ApiUnavailableError,)),
    # -- a create answered with junk may have made the pod: looked up by name; no listing answering = unknown
    Junk("create-html-and-listing-html", "create", {CREATE: HTML, LIST: HTML}, LaunchUnknownError,
         ("POST /v2/pods", "junk", "may exist", "GET /v2/pods")),
    Junk("create-pod-without-id-and-listing-broken", "create",
         {CREATE: _json({"name": NAME, "status": "PROVISIONING"}, status=201), LIST: _json([])}, LaunchUnknownError,
         ("POST /v2/pods", "no usable id", "may exist")),
    Junk("create-junk-and-no-such-pod", "create", {CREATE: _json([], status=201), LIST: _json({"pods": []})},
         ApiUnavailableError, ("POST /v2/pods", "creating 'hpo-s-1-0' kept failing", "the pod is a list"),
         not_error=(LaunchUnknownError,)),
    Junk("spot-without-id-and-listing-html", "spot",
         {GRAPHQL: _json({"data": {"podRentInterruptable": {"id": None}}}), LIST: HTML}, LaunchUnknownError,
         ("podRentInterruptable", "without a pod id", "may exist")),
    Junk("spot-data-null", "spot", {GRAPHQL: _json({"data": None}), LIST: _json({"pods": []})}, ApiUnavailableError,
         ("POST /graphql", "kept failing", "data is null"), not_error=(LaunchUnknownError,)),
]  # fmt: skip


@pytest.mark.parametrize("case", JUNK, ids=[case.id for case in JUNK])
def test_junk_is_one_line_naming_the_endpoint(client: RunPodApi, junk_server: JunkServer, case: Junk) -> None:
    junk_server.answers.update(case.answers)
    with pytest.raises(CloudError) as info:
        CALLS[case.call](client)
    error = info.value
    assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
    assert not isinstance(error, case.not_error), f"{type(error).__name__}: {error}"
    assert type(error).__module__ == "hpo.errors"  # the public family, never the parser's own
    text = str(error)
    assert "\n" not in text and len(text) < 1200, text
    for part in case.says:
        assert part in text, f"{part!r} not in {text!r}"
    assert error.__cause__ is None or isinstance(error.__cause__, requests.RequestException)


def test_a_read_answered_junk_is_retried_and_succeeds_once_runpod_is_back(
    client: RunPodApi, junk_server: JunkServer
) -> None:
    junk_server.answers[LIST] = [HTML, _json({"pods": [GOOD_POD]})]  # junk once, then RunPod's own answer
    assert [pod.id for pod in client.list_pods()] == ["pod0000000001"]
    assert junk_server.seen.count(LIST) == 2


def test_a_create_answered_junk_finds_the_pod_it_made_by_name(client: RunPodApi, junk_server: JunkServer) -> None:
    junk_server.answers.update({CREATE: HTML, LIST: _json({"pods": [GOOD_POD]})})
    pod = client.create_pod(_request())
    assert pod.id == "pod0000000001" and pod.name == NAME
    assert junk_server.seen.count(CREATE) == 1  # found by name: never posted twice


# ---------------------------------------------------------------------- single odd pods in a listing

ODD_PODS: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    # (case, the odd pod, what it reads as (None: skipped), what the warning says)
    ("no-id", {"name": NAME, "status": "RUNNING"}, None, "no usable id"),
    ("id-a-number", {"id": 7, "name": NAME, "status": "RUNNING"}, None, "no usable id"),
    ("name-null", {"id": "pododd", "name": None, "status": "RUNNING"}, None, "no usable name"),
    ("pod-a-string", "pododd", None, "the pod is a string"),  # type: ignore[list-item]
    ("status-unknown", {"id": "pododd", "name": NAME, "status": "HIBERNATING"}, {"status": "starting"},
     "taking it as live"),
    ("status-a-number", {"id": "pododd", "name": NAME, "status": 5}, {"status": "starting"}, "taking it as live"),
    ("cost-a-string", {"id": "pododd", "name": NAME, "status": "RUNNING", "cost": "0.27"},
     {"status": "running", "cost_per_hr": None}, "cost as a string"),
    ("gpu-a-list", {"id": "pododd", "name": NAME, "status": "RUNNING", "gpu": [A5000]},
     {"gpu_type": None, "gpu_count": 1}, "gpu as a list"),
    ("gpu-count-a-string", {"id": "pododd", "name": NAME, "status": "RUNNING", "gpu": {"id": A5000, "count": "2"}},
     {"gpu_type": A5000, "gpu_count": 1}, "gpu.count a string"),
    ("cost-infinite", {"id": "pododd", "name": NAME, "status": "RUNNING", "cost": 1e999}, {"cost_per_hr": None},
     "cost as a number"),
]  # fmt: skip


@pytest.mark.parametrize(("odd", "reads_as", "warning"), [c[1:] for c in ODD_PODS], ids=[c[0] for c in ODD_PODS])
def test_an_odd_pod_in_a_listing_is_skipped_or_read_safely_with_one_warning(
    client: RunPodApi,
    junk_server: JunkServer,
    caplog: pytest.LogCaptureFixture,
    odd: Any,
    reads_as: dict[str, Any] | None,
    warning: str,
) -> None:
    junk_server.answers[LIST] = _json({"pods": [GOOD_POD, odd]})
    with caplog.at_level(logging.WARNING, logger=_api.__name__):
        first = client.list_pods()
        second = client.list_pods()
    assert first == second and first[0].id == GOOD_POD["id"]
    if reads_as is None:
        assert len(first) == 1
    else:
        (_, pod) = first
        for name, value in reads_as.items():
            assert getattr(pod, name) == value, name
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warning in warnings[0], warnings  # once, not once per listing


def test_a_pod_with_a_junk_status_is_never_taken_for_dead() -> None:
    pod = _api.pod_from_json({"id": "p1", "name": NAME, "status": {"oops": 1}})
    assert pod.status in ("provisioning", "starting", "running")  # what the backend keeps alive
    with pytest.raises(ApiError):
        _api.pod_from_json(["not", "a", "pod"])


# ---------------------------------------------------------------------- a call's total time is bounded


class SilentServer:
    """A raw socket server that accepts connections and then either says nothing or trickles an answer."""

    def __init__(self, trickle: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.trickle = trickle
        self.stopping = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            while not self.stopping.wait(0.05):
                conn.sendall(b" ")
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["never-answers", "answers-a-byte-at-a-time"])
@pytest.mark.parametrize("call", ["list", "create"])
def test_a_hanging_api_gives_up_within_the_deadline_plus_one_request_timeout(trickle: bool, call: str) -> None:
    server = SilentServer(trickle=trickle)
    timeout, deadline = 0.5, 1.2
    api = RunPodApi(
        "k", rest_url=server.url, graphql_base=server.url, timeout=timeout, deadline=deadline, attempts=5,
        sleep=time.sleep,
    )  # fmt: skip
    began = time.monotonic()
    try:
        with pytest.raises(ApiUnavailableError) as info:
            CALLS[call](api)
    finally:
        took = time.monotonic() - began
        api.close()
        server.close()
    assert took <= deadline + timeout + 0.5, f"{took:.2f}s"
    assert "\n" not in str(info.value)
    if call == "create":
        assert isinstance(info.value, LaunchUnknownError)  # sent, unanswered: the pod may exist


# ---------------------------------------------------------------------- the fake refuses


FAKE_KEY = "bad-input-key"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeRunPod]:
    root = tmp_path_factory.mktemp("bad-input-fake")
    with FakeRunPod(
        volumes={"vol0123456": root / "vol"}, volume_data_center="EU-RO-1", api_keys={FAKE_KEY},
        workdir=root / "work", pod_command=["sleep", "600"],
    ) as server:  # fmt: skip
        yield server


def _create(fake: FakeRunPod, env: dict[str, str]) -> requests.Response:
    body = {
        "name": "env-probe", "image": "ghcr.io/example/hpo:1", "gpu": {"id": A5000, "count": 1}, "cloud": "SECURE",
        "dataCenterIds": ["EU-RO-1"], "mounts": {"network": [{"volumeId": "vol0123456", "path": "/workspace"}]},
        "env": env,
    }  # fmt: skip
    return requests.post(
        fake.url + "/v2/pods", json=body, headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=10
    )


DANGEROUS_ENV = [
    "BASH_ENV", "ENV", "PYTHONWARNINGS", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "LD_PRELOAD",
    "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "BROWSER", "PATH", "HOME", "PERL5OPT", "PERL5LIB", "RUBYOPT",
    "NODE_OPTIONS", "IFS", "PS4", "PROMPT_COMMAND", "SHELLOPTS", "GCONV_PATH", "EDITOR", "PAGER", "GIT_SSH_COMMAND",
    "JAVA_TOOL_OPTIONS", "OPENSSL_CONF", "LOCPATH", "PIP_INDEX_URL",
]  # fmt: skip
NOT_PLAIN_ENV = ["lowercase", "A-B", "1ABC", "A B", "", "A=B", "Ä"]


@pytest.mark.parametrize("name", DANGEROUS_ENV + NOT_PLAIN_ENV)
def test_the_fake_refuses_a_pod_env_that_could_run_a_command(fake: FakeRunPod, name: str) -> None:
    before = len(fake.pods(include_terminated=True))
    response = _create(fake, {"OUT_DIR": "/workspace/out", name: "x"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert set(problem) >= {"title", "status", "detail"} and problem["status"] == 400
    assert problem["detail"].startswith("env: ") and repr(name).strip("'") in problem["detail"]
    assert len(fake.pods(include_terminated=True)) == before  # nothing was made, nothing ran


def test_the_fake_refuses_a_nul_in_a_value_and_too_many_variables(fake: FakeRunPod) -> None:
    assert "NUL" in _create(fake, {"OUT_DIR": "a\x00b"}).json()["detail"]
    assert "at most 50" in _create(fake, {f"V{i}": "x" for i in range(51)}).json()["detail"]


def test_the_fake_refuses_a_dangerous_env_through_graphql_too(fake: FakeRunPod) -> None:
    query = (
        'mutation { podRentInterruptable(input: {bidPerGpu: 0.2, cloudType: SECURE, gpuCount: 1, '
        f'gpuTypeId: "{A5000}", name: "spot-probe", imageName: "ghcr.io/example/hpo:1", containerDiskInGb: 50, '
        'volumeInGb: 0, env: [{key: "BASH_ENV", value: "/tmp/x"}], networkVolumeId: "vol0123456", '
        'dataCenterId: "EU-RO-1"}) { id } }'
    )
    response = requests.post(
        fake.url + "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=10
    )
    errors = response.json()["errors"]
    assert "env: BASH_ENV may not be set" in errors[0]["message"]
    assert not [v for v in fake.pods(include_terminated=True) if v.name == "spot-probe"]


def test_plain_names_still_reach_the_pod(fake: FakeRunPod) -> None:
    response = _create(fake, {"OUT_DIR": "/workspace/out", "HPO_STUDY": "s", "_PRIVATE": "1", "MY_VAR2": "x y"})
    assert response.status_code == 201, response.text
    fake.terminate(response.json()["id"])


CONTROL_REFUSALS: list[tuple[str, dict[str, str], bytes | None, int]] = [
    # (case, headers, body, status)
    ("no-key", {"Content-Type": "application/json"}, b'{"usd": 1e9}', 401),
    ("wrong-key", {"Authorization": "Bearer nope", "Content-Type": "application/json"}, b'{"usd": 1e9}', 401),
    ("text-plain", {"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "text/plain"}, b'{"usd": 1e9}', 415),
    ("form-post", {"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "application/x-www-form-urlencoded"},
     b"usd=1000000000", 415),
    ("multipart", {"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "multipart/form-data; boundary=x"},
     b"--x--", 415),
    ("no-content-type", {"Authorization": f"Bearer {FAKE_KEY}"}, b'{"usd": 1e9}', 415),
    ("cross-origin-page", {"Origin": "http://evil.example", "Content-Type": "text/plain"}, b'{"usd": 1e9}', 401),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "body", "status"), [c[1:] for c in CONTROL_REFUSALS],
                         ids=[c[0] for c in CONTROL_REFUSALS])  # fmt: skip
def test_fake_control_routes_need_the_key_and_json(
    fake: FakeRunPod, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    balance = fake.balance()
    response = requests.post(fake.url + "/_fake/balance", data=body, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    assert response.json()["status"] == status and response.json()["detail"]
    assert fake.balance() == balance  # nothing changed


def test_fake_control_routes_work_with_the_key_and_json_and_refuse_a_pods_key(fake: FakeRunPod) -> None:
    headers = {"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "application/json"}
    assert requests.get(fake.url + "/_fake/pods", timeout=10).status_code == 401
    assert requests.get(fake.url + "/_fake/pods", headers=headers, timeout=10).status_code == 200
    balance = fake.balance()
    response = requests.post(fake.url + "/_fake/balance", json={"usd": balance}, headers=headers, timeout=10)
    assert response.status_code == 200
    made = _create(fake, {"OUT_DIR": "/workspace/out"}).json()
    try:
        pod_key = fake.pod(made["id"]).api_key
        as_pod = {"Authorization": f"Bearer {pod_key}", "Content-Type": "application/json"}
        assert requests.post(fake.url + "/_fake/balance", json={"usd": 0}, headers=as_pod, timeout=10).status_code == 403
    finally:
        fake.terminate(made["id"])


HOSTS: list[tuple[str, str, bool]] = [
    # (case, Host header with {port}, accepted)
    ("ipv4-loopback", "127.0.0.1:{port}", True),
    ("localhost", "localhost:{port}", True),
    ("localhost-upper-case", "LOCALHOST:{port}", True),
    ("ipv6-loopback", "[::1]:{port}", True),
    ("rebinding-name", "evil.example:{port}", False),
    ("rebinding-name-without-port", "evil.example", False),
    ("loopback-without-port", "localhost", False),
    ("loopback-other-port", "127.0.0.1:1", False),
    ("subdomain-of-localhost", "a.localhost:{port}", False),
    ("loopback-as-a-number", "2130706433:{port}", False),
]


@pytest.mark.parametrize(("host", "accepted"), [c[1:] for c in HOSTS], ids=[c[0] for c in HOSTS])
@pytest.mark.parametrize("path", ["/v2/pods", "/_fake/pods"])
def test_the_fake_answers_only_to_its_own_host_name(fake: FakeRunPod, host: str, accepted: bool, path: str) -> None:
    port = fake.url.rsplit(":", 1)[1]
    headers = {"Host": host.format(port=port), "Authorization": f"Bearer {FAKE_KEY}"}
    response = requests.get(fake.url + path, headers=headers, timeout=10)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 421 and "DNS rebinding" in response.json()["detail"]


def test_a_fake_started_without_a_key_makes_a_random_one(tmp_path: Path) -> None:
    with FakeRunPod(workdir=tmp_path / "a") as one, FakeRunPod(workdir=tmp_path / "b") as two:
        assert one.api_key != two.api_key and len(one.api_key) >= 20
        assert one.client_env()["RUNPOD_API_KEY"] == one.api_key
        for guess in ("fake-runpod-key", "", "test"):
            assert requests.get(one.url + "/v2/pods", headers={"Authorization": f"Bearer {guess}"}, timeout=10).status_code == 401
        assert requests.get(one.url + "/v2/pods", headers={"Authorization": f"Bearer {one.api_key}"}, timeout=10).ok


def test_the_command_line_prints_its_random_key_in_the_export_line(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo.fake_runpod", "--port", "0", "--workdir", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[4]
        exports = dict(part.split("=", 1) for part in process.stdout.readline().split()[1:])
        key = exports["RUNPOD_API_KEY"]
        assert key.startswith("fake-") and len(key) > 20
        assert requests.get(f"{url}/v2/pods", headers={"Authorization": f"Bearer {key}"}, timeout=10).json() == {"pods": []}
        assert requests.get(f"{url}/v2/pods", headers={"Authorization": "Bearer fake-runpod-key"}, timeout=10).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
