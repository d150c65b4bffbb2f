"""``hpo dashboard``: optuna-dashboard on a study's journal, read-only, live as the controller writes.

The browser tests build a real study through the journal writer (as the
controller does), serve the dashboard on it, and look at the page in
headless Chromium: the study, its trials, the intermediate-values plot, and
trials added after the page was first loaded, with nothing but GETs; and the
controller's cost/loss plot with a diverged trial in the study (the front
spread over the plot, not flattened by it), and the editing buttons (a note,
"Fail trial") answering that the dashboard is read-only. The other tests
refuse every edit (405 with a reason the page shows, journal and SQLite
alike, the study intact, nothing on the terminal), refuse a write that would
slip past that (403 from the storage, no "internal server error") and every
request for a foreign ``Host`` (403, DNS rebinding).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING
from wsgiref.types import WSGIApplication
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from browser import chromium_page, plot_points  # noqa: F401  (chromium_page is a pytest fixture)
from optuna.samplers import RandomSampler
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from test_report_readability import outlier_trials

from hpo.cli import main
from hpo.config import StudyConfig, load_study
from hpo.controller import open_study_volume
from hpo.dashboard import (
    READ_ONLY,
    ReadOnlyError,
    ReadOnlyStorage,
    allowed_host_names,
    dashboard_app,
    make_server,
    open_dashboard_storage,
)
from hpo.journal import StudyStorage, open_storage
from hpo.report import dashboard_figure

if TYPE_CHECKING:
    from playwright.sync_api import Page

STUDY = "dash"
STEPS = 5

STUDIES_YAML = """
studies:
  dash:
    objective: steady
    search_space:
      x: {type: float, low: 0.0, high: 1.0}
    sampler: {type: random, seed: 0}
    pruner: {type: none}
    fidelity: {max_step: 5}
    budget: {trials: 10}
    volume: {path: volume}
    STORAGE
"""


def write_studies(root: Path, storage: str | None = None) -> Path:
    """studies.yaml for the one study ``dash``, its volume (or SQLite file) beside it."""
    path = root / "studies.yaml"
    path.write_text(STUDIES_YAML.replace("STORAGE", f"storage: {storage}" if storage else ""))
    return path


def open_writer(config: StudyConfig, cache_dir: Path) -> StudyStorage:
    """The journal opened as the controller opens it: the one writer."""
    return open_storage(open_study_volume(config), config.name, url=config.storage, writer=True, cache_dir=cache_dir)


def add_trials(study: optuna.Study, count: int) -> None:
    """``count`` trials reporting STEPS intermediate values; every third one pruned half way."""
    for _ in range(count):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        pruned = trial.number % 3 == 1
        for step in range(STEPS // 2 + 1 if pruned else STEPS):
            trial.report(x + 1.0 / (step + 1), step)
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, x + 1.0 / STEPS)


def make_study(config: StudyConfig, cache_dir: Path, trials: int) -> tuple[StudyStorage, optuna.Study]:
    """The study with ``trials`` trials, flushed to the volume; the writer stays open for more."""
    writer = open_writer(config, cache_dir)
    study = optuna.create_study(study_name=config.name, storage=writer.optuna, sampler=RandomSampler(seed=0))
    add_trials(study, trials)
    writer.flush()
    return writer, study


@contextmanager
def serving(app: WSGIApplication) -> Iterator[str]:
    """Serve ``app`` with the dashboard's own threaded server on a free port; yields its /dashboard/ URL."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dashboard/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wsgi_call(app: WSGIApplication, path: str, method: str = "GET", json_body: object = None) -> tuple[int, bytes]:
    """One request straight into a WSGI app, no socket: (status code, body)."""
    environ: dict[str, object] = {"PATH_INFO": path, "REQUEST_METHOD": method}
    if json_body is not None:
        data = json.dumps(json_body).encode()
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(data)), **{"wsgi.input": io.BytesIO(data)})
    setup_testing_defaults(environ)
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))  # type: ignore[arg-type, misc]
    return int(statuses[0].split()[0]), body


def listed_studies(body: bytes) -> list[dict[str, object]]:
    """The studies in /api/studies's answer (``study_summaries``, which optuna-dashboard plans to rename)."""
    payload = json.loads(body)
    return payload.get("study_summaries", payload.get("studies"))


def legend(page: Page) -> list[str]:
    """The trial names in the intermediate-values plot's legend."""
    return [text.strip() for text in page.locator("#graph-intermediate-values .legendtext").all_text_contents()]


# -- in the browser ---------------------------------------------------------------------------------


@pytest.mark.slow  # headless Chromium
def test_the_page_shows_the_study_its_plots_and_trials_added_later(
    tmp_path: Path, chromium_page: Page
) -> None:
    page = chromium_page
    config = load_study(write_studies(tmp_path), STUDY)
    writer, study = make_study(config, tmp_path / "controller-cache", trials=4)
    # Its own cache folder: the dashboard must find the segments on the volume, as on another machine.
    storage = open_dashboard_storage(config, cache_dir=tmp_path / "dashboard-cache")
    study_id = storage.get_study_id_from_name(STUDY)

    refused: list[str] = []  # the page must load with what the read-only dashboard answers
    page.on("response", lambda response: refused.append(f"{response.request.method} {response.url} {response.status}")
            if response.status in (403, 405) else None)
    page.on("request", lambda request: refused.append(f"{request.method} {request.url}")
            if request.method not in ("GET", "HEAD") else None)
    with serving(dashboard_app(storage)) as url:
        try:
            page.goto(url)
            page.get_by_text(re.compile(rf"\b{STUDY}\b")).first.click()  # the study's card, as a person would
            page.wait_for_url(re.compile(rf"/dashboard/studies/{study_id}$"))
            page.locator("#graph-intermediate-values .main-svg").first.wait_for()
            page.wait_for_function(
                "n => document.querySelectorAll('#graph-intermediate-values .legendtext').length >= n", arg=4
            )
            page.screenshot(path=str(tmp_path / "study.png"), full_page=True)
            assert page.get_by_text("Intermediate values").is_visible()
            assert legend(page) == [f"trial #{n}" for n in range(4)]
            assert page.get_by_text(f"{STUDY} (id={study_id})").is_visible()

            page.goto(f"{url}studies/{study_id}/trials")
            page.get_by_text("4 Trials").wait_for()
            for number in range(4):
                assert page.get_by_text(f"Trial {number}", exact=True).is_visible()
            assert page.get_by_text("Pruned").first.is_visible()
            page.screenshot(path=str(tmp_path / "trials.png"))

            # The controller goes on: two more trials, flushed. The reader picks them up by itself.
            add_trials(study, 2)
            writer.flush()
            page.goto(f"{url}studies/{study_id}")
            deadline = time.monotonic() + 15  # reader refresh (2 s) + the dashboard's trial cache (2 s), with margin
            while len(legend(page)) < 6 and time.monotonic() < deadline:
                page.wait_for_timeout(500)
                page.reload()
                page.locator("#graph-intermediate-values .main-svg").first.wait_for()
            page.screenshot(path=str(tmp_path / "study-after.png"), full_page=True)
            assert legend(page) == [f"trial #{n}" for n in range(6)]
            page.goto(f"{url}studies/{study_id}/trials")
            page.get_by_text("6 Trials").wait_for()
            assert page.get_by_text("Trial 5", exact=True).is_visible()
            assert refused == []
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # what the page showed, for debugging
            raise

    # The dashboard wrote nothing: the controller's next segment is still its own to write.
    add_trials(study, 1)
    writer.flush()


@pytest.mark.slow  # headless Chromium
def test_the_cost_plot_shows_the_front_past_a_diverged_trial_and_edits_say_read_only(
    tmp_path: Path, chromium_page: Page, capfd: pytest.CaptureFixture[str]
) -> None:
    page = chromium_page
    config = load_study(write_studies(tmp_path), STUDY)
    writer = open_writer(config, tmp_path / "controller-cache")
    study = optuna.create_study(study_name=config.name, storage=writer.optuna)
    for trial in outlier_trials():  # costs 0.01 to 0.8 USD, a front from 0.6 down to 0.04, and one at 500
        study.add_trial(trial)
    running = study.ask()  # a running trial, which the page offers to "Fail"
    running.suggest_float("lr", 1e-4, 1.0, log=True)
    # What the controller does at the end of a run: the cost/loss front as a plot of the study.
    figure = dashboard_figure(config, study, writer.optuna)
    assert figure is not None
    optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id="hpo-cost-vs-loss")
    writer.flush()
    storage = open_dashboard_storage(config, cache_dir=tmp_path / "dashboard-cache")
    study_id = storage.get_study_id_from_name(STUDY)

    with serving(dashboard_app(storage)) as url:
        try:
            page.goto(f"{url}studies/{study_id}")
            front = plot_points(page, "Pareto front", "Pareto front")
            assert front.axis_type == "log"  # 0.04 to 0.6 once the diverged trial is clipped
            kept, clipped = front.pixels[:-1], front.pixels[-1]
            assert len(kept) == 5 and (max(kept) - min(kept)) / front.height > 0.6  # not a flat line
            assert 0 <= clipped < 0.1 * front.height  # the diverged trial: on the top edge
            page.screenshot(path=str(tmp_path / "study.png"), full_page=True)

            # The editing buttons answer with the reason, shown on the page.
            page.goto(f"{url}studies/{study_id}/trials?numbers={running.number}")
            page.get_by_role("button", name=re.compile("fail trial", re.I)).click()
            page.get_by_text(re.compile("read-only: the study is driven by hpo run")).first.wait_for()
            page.reload()
            page.locator("button:has(svg[data-testid='EditIcon'])").first.click()  # the trial's note
            page.locator("textarea").first.fill("a note")
            page.get_by_role("button", name=re.compile("^save$", re.I)).click()
            page.get_by_text(re.compile("notes are not saved")).first.wait_for()
            page.screenshot(path=str(tmp_path / "refused.png"))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)  # what the page showed, for debugging
            raise
    assert "Traceback" not in capfd.readouterr().err  # the server ran in this process: its log is ours
    assert storage.get_all_trials(study_id)[-1].state == TrialState.RUNNING


# -- without a browser ------------------------------------------------------------------------------


def test_the_reader_sees_flushed_trials_only_and_refreshes_by_itself(tmp_path: Path) -> None:
    config = load_study(write_studies(tmp_path), STUDY)
    writer, study = make_study(config, tmp_path / "controller-cache", trials=2)
    storage = open_dashboard_storage(config, cache_dir=tmp_path / "dashboard-cache", refresh_interval=0.1)
    study_id = storage.get_study_id_from_name(STUDY)
    assert len(storage.get_all_trials(study_id)) == 2

    add_trials(study, 1)  # appended by the controller, not yet flushed to the volume
    time.sleep(0.2)
    assert len(storage.get_all_trials(study_id)) == 2
    writer.flush()
    time.sleep(0.2)
    trials = storage.get_all_trials(study_id)
    assert len(trials) == 3 and trials[2].intermediate_values == study.trials[2].intermediate_values


EDITS = [
    ("DELETE", "/api/studies/{id}"),
    ("POST", "/api/studies"),
    ("POST", "/api/studies/{id}/rename"),
    ("PUT", "/api/studies/{id}/note"),
    ("PUT", "/api/studies/{id}/0/note"),
    ("POST", "/api/trials/0/tell"),
    ("POST", "/api/trials/0/user-attrs"),
    ("PATCH", "/api/studies/{id}"),
    ("OPTIONS", "/api/studies"),
]
"""optuna-dashboard's editing routes (and two methods it has no route for)."""


def snapshot(storage: BaseStorage, study_id: int) -> tuple[object, ...]:
    """What an edit could change: studies, their attributes, every trial."""
    names = sorted(s.study_name for s in storage.get_all_studies())
    trials = [(t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs, t.intermediate_values)
              for t in storage.get_all_trials(study_id)]
    return names, storage.get_study_user_attrs(study_id), storage.get_study_system_attrs(study_id), trials


@pytest.mark.parametrize("storage_url", [None, "sqlite:///optuna.db"], ids=["journal", "sqlite"])
def test_every_edit_is_refused_405_and_the_study_is_intact(tmp_path: Path, storage_url: str | None) -> None:
    config = load_study(write_studies(tmp_path, storage=storage_url), STUDY)
    make_study(config, tmp_path / "controller-cache", trials=3)
    storage = open_dashboard_storage(config, cache_dir=tmp_path / "dashboard-cache")
    study_id = storage.get_study_id_from_name(STUDY)
    before = snapshot(storage, study_id)
    files = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and "cache" not in str(path)}
    app = dashboard_app(storage)

    for method, path in EDITS:
        status, body = wsgi_call(app, path.format(id=study_id), method=method)
        assert status == 405, (method, path, body)
        assert "read-only" in json.loads(body)["reason"]
    assert snapshot(storage, study_id) == before
    assert {path: path.read_bytes() for path in files} == files
    status, body = wsgi_call(app, "/api/studies")
    assert status == 200 and [s["study_name"] for s in listed_studies(body)] == [STUDY]
    status, body = wsgi_call(app, f"/api/studies/{study_id}")
    assert status == 200 and len(json.loads(body)["trials"]) == 3
    assert wsgi_call(app, "/api/meta", method="HEAD")[0] == 200


@pytest.mark.parametrize("storage_url", [None, "sqlite:///optuna.db"], ids=["journal", "sqlite"])
def test_the_storage_itself_refuses_writes(tmp_path: Path, storage_url: str | None) -> None:
    config = load_study(write_studies(tmp_path, storage=storage_url), STUDY)
    make_study(config, tmp_path / "controller-cache", trials=1)
    storage = ReadOnlyStorage(open_dashboard_storage(config, cache_dir=tmp_path / "dashboard-cache"))
    study_id = storage.get_study_id_from_name(STUDY)
    with pytest.raises(ReadOnlyError, match="read-only"):
        storage.delete_study(study_id)
    with pytest.raises(ReadOnlyError):
        storage.set_study_system_attr(study_id, "dashboard:note", "x")
    with pytest.raises(ReadOnlyError):
        storage.create_new_trial(study_id)
    with pytest.raises(ReadOnlyError):
        storage.set_trial_user_attr(storage.get_all_trials(study_id)[0]._trial_id, "k", 1)
    assert len(storage.get_all_trials(study_id)) == 1


@pytest.mark.parametrize("storage_url", [None, "sqlite:///optuna.db"], ids=["journal", "sqlite"])
def test_a_write_past_the_method_guard_is_refused_by_the_storage_without_a_traceback(
    tmp_path: Path, storage_url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_study(write_studies(tmp_path, storage=storage_url), STUDY)
    make_study(config, tmp_path / "controller-cache", trials=2)
    storage = ReadOnlyStorage(open_dashboard_storage(config, cache_dir=tmp_path / "dashboard-cache"))
    study_id = storage.get_study_id_from_name(STUDY)
    trial_id = storage.get_all_trials(study_id)[0]._trial_id
    before = snapshot(storage, study_id)
    bare = optuna_dashboard.wsgi(storage)  # as if a future optuna-dashboard wrote from a GET: no 405 layer
    edits = [
        ("PUT", f"/api/studies/{study_id}/note", {"version": 1, "body": "a note"}),
        ("PUT", f"/api/studies/{study_id}/{trial_id}/note", {"version": 1, "body": "a note"}),
        ("POST", f"/api/trials/{trial_id}/tell", {"state": "Fail"}),
        ("POST", f"/api/trials/{trial_id}/user-attrs", {"user_attrs": {"k": 1}}),
        ("DELETE", f"/api/studies/{study_id}", None),
    ]
    with caplog.at_level(logging.DEBUG):
        for method, path, body in edits:
            status, answer = wsgi_call(bare, path, method=method, json_body=body)
            reason = json.loads(answer)["reason"]
            assert status == 403 and reason.startswith(READ_ONLY + "; it does not "), (method, path, answer)
    assert snapshot(storage, study_id) == before
    # optuna-dashboard answered a bottle HTTPError: no "internal server error", no traceback in its log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text and "internal server error" not in caplog.text


def http_status(url: str, *, host: str | None = None, method: str = "GET") -> int:
    """The status of one request to ``url``, with ``host`` as its Host header if given."""
    request = urllib.request.Request(url, method=method, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_foreign_host_header_is_refused(tmp_path: Path) -> None:
    config = load_study(write_studies(tmp_path, storage="sqlite:///optuna.db"), STUDY)
    make_study(config, tmp_path / "controller-cache", trials=1)
    with serving(dashboard_app(open_dashboard_storage(config))) as url:
        port = url.split(":")[2].split("/")[0]
        api = url.replace("/dashboard/", "/api/studies")
        assert http_status(api) == 200
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST", "localhost:9999"):
            assert http_status(api, host=host) == 200, host
        for host in (f"evil.example:{port}", "attacker.test", f"127.0.0.1.nip.io:{port}", f"localhost.evil.example:{port}"):
            assert http_status(api, host=host) == 403, host
        assert http_status(api, host=f"evil.example:{port}", method="DELETE") == 403
        assert http_status(api.replace("/api/studies", "/api/studies/1"), method="DELETE") == 405
    storage = open_dashboard_storage(config)
    assert [s.study_name for s in storage.get_all_studies()] == [STUDY]


def test_the_allowed_host_names_follow_the_bound_address() -> None:
    names, any_ip = allowed_host_names("127.0.0.1")
    assert {"127.0.0.1", "localhost", "::1"} <= names and not any_ip
    assert "evil.example" not in names
    names, any_ip = allowed_host_names("::1")
    assert {"127.0.0.1", "localhost", "::1"} <= names and not any_ip
    names, any_ip = allowed_host_names("192.0.2.7", ["dash.internal"])
    assert {"192.0.2.7", "dash.internal", socket.gethostname().lower()} <= names and not any_ip
    assert "evil.example" not in names and "127.0.0.1" not in names
    names, any_ip = allowed_host_names("0.0.0.0")
    assert any_ip and "localhost" in names


def test_a_study_with_an_rdb_url_is_served_from_its_database(tmp_path: Path) -> None:
    config = load_study(write_studies(tmp_path, storage="sqlite:///optuna.db"), STUDY)
    _, study = make_study(config, tmp_path / "controller-cache", trials=2)
    app = dashboard_app(open_dashboard_storage(config))
    status, body = wsgi_call(app, "/api/studies")
    assert status == 200
    (listed,) = listed_studies(body)
    assert listed["study_name"] == STUDY
    assert (tmp_path / "optuna.db").is_file() and not (tmp_path / "volume").exists()
    status, body = wsgi_call(app, f"/api/studies/{listed['study_id']}")
    assert status == 200 and len(json.loads(body)["trials"]) == len(study.trials) == 2


# -- the command line -------------------------------------------------------------------------------


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


# `python -m hpo`, with Python's Ctrl-C handler installed even where the test runner was started with
# SIGINT ignored (a background job of a non-interactive shell), which the child would inherit.
HPO_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('hpo', run_name='__main__', alter_sys=True)"
)


@dataclass
class Served:
    """``hpo dashboard`` running: its URL; once stopped, its exit code and what it wrote after the URL line."""

    url: str
    code: int | None = None
    stderr: str = ""
    stdout: str = ""


@contextmanager
def dashboard_command(tmp_path: Path, studies: Path, stop: signal.Signals = signal.SIGINT) -> Iterator[Served]:
    """Run ``hpo dashboard`` on study ``dash`` (any free port) until the block ends, then stop it with ``stop``.

    Its stderr is read line by line: the first must be the URL line (the study
    exists, so nothing to warn about); the rest is kept for the test to look at.
    """
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "dashboard-cache")}
    process = subprocess.Popen(
        [sys.executable, "-c", HPO_WITH_CTRL_C, "dashboard", "--study", STUDY, "--studies", str(studies), "--port", "0"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert process.stderr is not None and process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stderr, lines), daemon=True)
    reader.start()
    served = Served("")
    try:
        first = lines.get(timeout=120)
        match = re.fullmatch(r"hpo: dashboard of study 'dash' at (http://127\.0\.0\.1:\d+/dashboard/) \(Ctrl-C to stop\)\n", first)
        assert match, first
        served.url = match.group(1)
        yield served
    finally:
        process.send_signal(stop)
        try:
            served.code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        reader.join(5)
        served.stderr = "".join(lines.queue)
        served.stdout = process.stdout.read()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_command_serves_the_dashboard_until_stopped(tmp_path: Path, stop: signal.Signals) -> None:
    studies = write_studies(tmp_path)
    make_study(load_study(studies, STUDY), tmp_path / "controller-cache", trials=2)
    with dashboard_command(tmp_path, studies, stop) as served:
        with urllib.request.urlopen(served.url, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        with urllib.request.urlopen(served.url.replace("/dashboard/", "/api/studies"), timeout=10) as response:
            assert [s["study_name"] for s in listed_studies(response.read())] == [STUDY]
    assert served.code == 0, served.stderr
    assert served.stderr == ""  # no traceback, no request log, no "interrupted" message
    assert served.stdout == ""


def refused(url: str, method: str, json_body: object) -> tuple[int, str]:
    """Send one edit as the page would (a JSON body); the status and the ``reason`` of the refusal."""
    data = json.dumps(json_body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())["reason"]


def test_every_edit_answers_read_only_and_leaves_the_terminal_quiet(tmp_path: Path) -> None:
    studies = write_studies(tmp_path)
    make_study(load_study(studies, STUDY), tmp_path / "controller-cache", trials=2)
    with dashboard_command(tmp_path, studies) as served:
        root = served.url.replace("/dashboard/", "")
        reasons = {}
        for method, path in EDITS:
            status, reason = refused(root + path.format(id=0), method, {"version": 1, "body": "x", "state": "Fail"})
            assert status == 405, (method, path, reason)
            assert reason.startswith(READ_ONLY + "; "), (method, path, reason)
            reasons[method, path] = reason
    # Each button the page has says what it cannot do, and why.
    assert "notes are not saved" in reasons["PUT", "/api/studies/{id}/0/note"]
    assert "notes are not saved" in reasons["PUT", "/api/studies/{id}/note"]
    assert "hpo run sets each trial's state" in reasons["POST", "/api/trials/0/tell"]
    assert "not deleted" in reasons["DELETE", "/api/studies/{id}"]
    assert "PATCH is refused" in reasons["PATCH", "/api/studies/{id}"]
    assert served.code == 0
    assert "Traceback" not in served.stderr and "internal server error" not in served.stderr
    assert served.stderr == ""  # a refusal is expected, not an error: nothing for the terminal


def test_a_port_in_use_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    studies = write_studies(tmp_path)
    monkeypatch.setenv("HPO_CACHE_DIR", str(tmp_path / "dashboard-cache"))
    make_study(load_study(studies, STUDY), tmp_path / "controller-cache", trials=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dashboard", "--study", STUDY, "--studies", str(studies), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("hpo: error: ") and f"127.0.0.1:{port}" in err and "in use" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_study_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["dashboard", "--study", "dahs", "--studies", str(write_studies(tmp_path))])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown study 'dahs'" in err and len(err.strip().splitlines()) == 1
