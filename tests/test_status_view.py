"""``hpo status`` on a long study: a screenful by default (running, best, failed, recent), every trial with ``--all`` or ``--json``."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyfiles import hpo_in_process, make_workspace, study_config, study_volume

from hpo.cli._status import _spend_lines, controller_line
from hpo.cost import ControllerCost, Overhead, save_controller_cost
from hpo.journal import open_storage
from hpo.lease import Lease, LeaseHolder
from hpo.status import BEST_SHOWN, FAILED_SHOWN, TrialRow, controller_view, rows_by_priority, spend_summary
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_QUEUED
from hpo.volume import Volume

TRIALS = 300
RUNNING = {296, 297, 298, 299}  # the last four; 297 and 299 wait for capacity (queued)
FAILED = {n for n in range(TRIALS) if n % 50 == 7}
ROW = re.compile(r"^\s*(\d+)\s+(running|queued|complete|pruned|failed)\s")


def _value(number: int) -> float:
    """Trial ``number``'s value: the lowest is trial 123's, then the others by their distance from 123."""
    return 0.01 + abs(number - 123) / 1000


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A 300-trial ``steady`` study written straight into its journal: complete, pruned, failed, running, queued."""
    root = tmp_path_factory.mktemp("status-view")
    studies = make_workspace(root / "project", trials=TRIALS)
    config = study_config(studies, "steady")
    storage = open_storage(study_volume(config), "steady", writer=True, cache_dir=root / "writer-cache")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    made = optuna.create_study(study_name="steady", storage=storage.optuna, direction=config.direction)
    for number in range(TRIALS):
        trial = made.ask(config.distributions())
        trial.set_user_attr(ATTR_ATTEMPTS, 1)
        for step in (1, 2):
            trial.report(_value(number) + 1.0 / step, step)
        if number in RUNNING:
            if number % 2:
                trial.set_user_attr(ATTR_QUEUED, True)
        elif number in FAILED:
            trial.set_user_attr(ATTR_ERROR, f"RuntimeError: [trial {number}] out of memory")
            made.tell(trial, None, state=TrialState.FAIL)
        elif number % 3 == 1:
            made.tell(trial, None, state=TrialState.PRUNED)
        else:
            made.tell(trial, _value(number))
    storage.flush()
    return studies, {"HPO_CACHE_DIR": str(root / "cache")}


def _status(study: tuple[Path, dict[str, str]], *args: str, columns: int = 80, lines: str = "24") -> str:
    studies, env = study
    done = hpo_in_process(
        "status", "--study", "steady", "--studies", str(studies), *args,
        env={**env, "COLUMNS": str(columns), "LINES": lines},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rows(text: str) -> dict[int, str]:
    """The table's rows: trial number to state."""
    return {int(m[1]): m[2] for m in (ROW.match(line) for line in text.splitlines()) if m}


def _best() -> list[int]:
    done = [n for n in range(TRIALS) if n not in RUNNING | FAILED and n % 3 != 1]
    return sorted(done, key=_value)[:BEST_SHOWN]


def test_the_default_view_fits_80_by_24_with_the_running_and_best_trials_and_says_what_it_leaves_out(
    study: tuple[Path, dict[str, str]],
) -> None:
    text = _status(study)
    lines = text.splitlines()
    assert len(lines) <= 23, text  # a line kept for the prompt
    assert "…" not in text and max(len(line) for line in lines) <= 80, text
    rows = _rows(text)
    assert {n: rows.get(n) for n in RUNNING} == {296: "running", 297: "queued", 298: "running", 299: "queued"}
    assert set(_best()) <= set(rows), (rows, _best())
    assert list(rows) == sorted(rows)  # in trial order
    hidden = TRIALS - len(rows)
    assert hidden > 0
    flat = " ".join(text.split())
    assert f"{hidden} of {TRIALS} trials not shown" in flat
    assert "hpo status --study steady --all" in flat
    assert "parameters: hpo status --study steady --wide (or --json)" in flat  # a row a line: parameters to --wide
    assert "best: trial 123, value 0.01" in flat


def test_the_default_view_has_the_latest_failed_trial_with_its_log_hint_when_there_is_room(
    study: tuple[Path, dict[str, str]],
) -> None:
    text = _status(study, lines="40")
    assert len(text.splitlines()) <= 39
    rows = _rows(text)
    latest = max(FAILED)
    assert rows.get(latest) == "failed", text
    flat = " ".join(text.split())
    assert f"trial {latest} failed: RuntimeError: [trial {latest}] out of memory" in flat
    assert f"its log: hpo logs --study steady --trial {latest}" in flat
    assert 299 - 4 in rows  # then the most recent others


def test_piped_output_without_lines_shows_a_screenful_of_40(study: tuple[Path, dict[str, str]]) -> None:
    text = _status(study, lines="")
    assert 20 < len(text.splitlines()) <= 39
    assert "trials not shown" in text


def test_all_draws_every_trial_and_cuts_nothing(study: tuple[Path, dict[str, str]]) -> None:
    text = _status(study, "--all")
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    rows = _rows(text)
    assert sorted(rows) == list(range(TRIALS))
    assert rows[296] == "running" and rows[297] == "queued" and rows[7] == "failed"
    assert "not shown" not in text
    for number in FAILED:
        assert f"its log: hpo logs --study steady --trial {number}" in text


def test_json_has_every_trial_with_or_without_all(study: tuple[Path, dict[str, str]]) -> None:
    for args in (("--json",), ("--json", "--all")):
        trials = json.loads(_status(study, *args))["trials"]
        assert [t["number"] for t in trials] == list(range(TRIALS))
        assert trials[297]["state"] == "queued" and trials[7]["state"] == "fail"


def _row(number: int, state: str, value: float | None = None) -> TrialRow:
    return TrialRow(
        number=number, state=state, last_step=1, last_value=value, value=value, attempts=1, preemptions=0,
        params={}, worker=None, error=None,
    )


def test_rows_by_priority_takes_running_then_best_then_latest_failed_then_the_most_recent() -> None:
    rows = [_row(n, "complete", float(n)) for n in range(10)]
    rows += [_row(10 + n, "fail") for n in range(FAILED_SHOWN + 1)]
    rows += [_row(20, "queued"), _row(21, "running"), _row(22, "pruned")]
    ordered, must = rows_by_priority(rows, "minimize")
    numbers = [r.number for r in ordered]
    assert must == 2 and numbers[:2] == [20, 21]
    assert numbers[2 : 2 + BEST_SHOWN] == [0, 1, 2]
    failed = list(range(10 + FAILED_SHOWN, 10, -1))  # the latest FAILED_SHOWN, newest first; trial 10 waits
    assert numbers[2 + BEST_SHOWN : 2 + BEST_SHOWN + FAILED_SHOWN] == failed
    assert numbers[2 + BEST_SHOWN + FAILED_SHOWN :] == [22, 10, 9, 8, 7, 6, 5, 4, 3]
    assert sorted(numbers) == sorted(r.number for r in rows)  # each trial once
    best_of_max = rows_by_priority(rows, "maximize")[0]
    assert [r.number for r in best_of_max[2 : 2 + BEST_SHOWN]] == [9, 8, 7]


def test_the_spend_counts_warm_workers_overhead_and_says_so(tmp_path: Path) -> None:
    config = study_config(make_workspace(tmp_path / "ws"), "steady")
    rows = [
        TrialRow(
            number=0, state="complete", last_step=6, last_value=0.5, value=0.5, attempts=1, preemptions=0,
            params={}, worker=None, error=None, best_value=0.5, cost_usd=0.2, gpu_seconds=600.0,
        )
    ]
    spend = spend_summary(rows, config, Overhead(usd=0.05, seconds=180.0, workers=2))
    assert spend.usd == pytest.approx(0.25) and spend.overhead_usd == 0.05
    [line] = [text for text in _spend_lines(spend, config) if text.startswith("spent:")]
    assert line == (
        "spent: $0.2500, 0.1667 GPU-hours; of it, warm workers' overhead (provisioning, image pull, idle) "
        "$0.0500, 180 worker-seconds"
    )
    assert not [text for text in _spend_lines(spend_summary(rows, config), config) if "overhead" in text]


# ---------------------------------------------------------------------- where the controller runs, and its cost

POD = "abc123xyz"


def test_the_controller_line_says_where_it_runs_its_uptime_and_its_cost() -> None:
    now = 2_000_000.0
    pod = LeaseHolder("a", "c0ffee", 1, now + 60, pod=POD, started_at=now - 7510)
    record = ControllerCost(POD, 0.17, 7500.0, 0.0816, now - 7500, billed=False)
    remote = controller_view(pod, {POD: record}, now)
    assert controller_line(remote) == f"controller: remote, pod {POD}, up 2h 5m, $0.1700 so far"
    assert controller_line(controller_view(pod, {}, now)) == f"controller: remote, pod {POD}, up 2h 5m"
    here = LeaseHolder("b", "laptop", 4242, now + 60, started_at=now - 200)
    assert controller_line(controller_view(here, {}, now, hostname="laptop")) == (
        "controller: pid 4242 on laptop (this machine), up 3m 20s"
    )
    old = LeaseHolder("c", "workstation", 4242, now + 60)  # an older controller's lease: no start recorded
    assert controller_line(controller_view(old, {}, now, hostname="laptop")) == "controller: pid 4242 on workstation"
    expired = LeaseHolder("d", "workstation", 4242, now - 1, pod=POD, started_at=now - 600)
    for gone in (None, expired):
        view = controller_view(gone, {POD: record}, now)
        assert not view.running and controller_line(view) == "controller: none running"


def test_the_spend_counts_the_controller_pods_and_says_so(tmp_path: Path) -> None:
    config = study_config(make_workspace(tmp_path / "ws"), "steady")
    rows = [
        TrialRow(
            number=0, state="complete", last_step=6, last_value=0.5, value=0.5, attempts=1, preemptions=0,
            params={}, worker=None, error=None, best_value=0.5, cost_usd=0.2, gpu_seconds=600.0,
        )
    ]
    pods = [
        ControllerCost(POD, 0.12, 5000.0, 0.0816, 1_000_000.0, billed=True),
        ControllerCost("secondpod2", 0.05, 2000.0, 0.09, 1_010_000.0, billed=False),
    ]
    spend = spend_summary(rows, config, None, pods)
    assert spend.usd == pytest.approx(0.37) and spend.controller_usd == pytest.approx(0.17)
    assert (spend.controller_seconds, spend.controller_pods) == (7000.0, 2)
    [line] = [text for text in _spend_lines(spend, config) if text.startswith("spent:")]
    assert line == "spent: $0.3700, 0.1667 GPU-hours; of it, controller $0.1700"
    both = spend_summary(rows, config, Overhead(usd=0.05, seconds=180.0, workers=2), pods)
    [line] = [text for text in _spend_lines(both, config) if text.startswith("spent:")]
    assert line == (
        "spent: $0.4200, 0.1667 GPU-hours; of it, warm workers' overhead (provisioning, image pull, idle) "
        "$0.0500, 180 worker-seconds; controller $0.1700"
    )
    assert not [text for text in _spend_lines(spend_summary(rows, config), config) if "controller" in text]


@pytest.fixture
def small_study(tmp_path: Path) -> tuple[Path, dict[str, str], Volume, ControllerCost]:
    """A two-trial ``steady`` study, one trial complete at $0.20, and a controller pod's record of $0.17."""
    studies = make_workspace(tmp_path / "project", trials=2)
    config = study_config(studies, "steady")
    volume = study_volume(config)
    storage = open_storage(volume, "steady", writer=True, cache_dir=tmp_path / "writer-cache")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    made = optuna.create_study(study_name="steady", storage=storage.optuna, direction=config.direction)
    trial = made.ask(config.distributions())
    trial.set_user_attr(ATTR_ATTEMPTS, 1)
    made.tell(trial, 0.5)
    started = time.time() - 7510
    record = ControllerCost(POD, 0.17, 7500.0, 0.0816, started, billed=False)
    save_controller_cost(storage.optuna, made._study_id, record)
    storage.flush()
    return studies, {"HPO_CACHE_DIR": str(tmp_path / "cache")}, volume, record


def _small_status(study: tuple[Path, dict[str, str], Volume, ControllerCost], *args: str) -> str:
    studies, env = study[0], study[1]
    done = hpo_in_process("status", "--study", "steady", "--studies", str(studies), *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_status_shows_a_remote_controller_from_its_lease_with_its_cost_counted_to_now(
    small_study: tuple[Path, dict[str, str], Volume, ControllerCost],
) -> None:
    volume = small_study[2]
    now = time.time()
    lease = {"id": "c0ffee", "host": "c0ffee-host", "pid": 1, "expires_at": now + 600, "pod": POD, "started_at": now - 7510}
    volume.write_json("hpo/steady/lease.json", lease)
    text = _small_status(small_study)
    [line] = [line for line in text.splitlines() if line.startswith("controller:")]
    assert re.fullmatch(rf"controller: remote, pod {POD}, up 2h \d+m, \$0\.17\d\d so far", line), line
    assert "; of it, controller $0.17" in text

    before = time.time()
    shown = json.loads(_small_status(small_study, "--json"))
    after = time.time()
    controller = shown["controller"]
    assert controller["running"] and controller["where"] == "remote" and controller["pod"] == POD
    assert controller["uptime_seconds"] >= 7510 and controller["started_at"] == lease["started_at"]
    # The pod bills on at $0.0816/h since its record (10 s before the lease was written): counted up to now.
    record = small_study[3]
    assert record.usd_at(before) - 1e-9 <= controller["usd"] <= record.usd_at(after) + 1e-9
    assert controller["usd"] > 0.17
    spend = shown["spend"]
    assert spend["controller_usd"] == controller["usd"] and spend["controller_pods"] == 1
    assert spend["usd"] == pytest.approx(controller["usd"])  # the trial's worker was free (local)


def test_status_shows_a_local_controller_and_none_when_its_lease_is_gone(
    small_study: tuple[Path, dict[str, str], Volume, ControllerCost],
) -> None:
    volume = small_study[2]
    lease = Lease(volume, "steady")
    lease.acquire()  # this very process, as `hpo run` on this machine
    text = _small_status(small_study)
    [line] = [line for line in text.splitlines() if line.startswith("controller:")]
    assert re.fullmatch(rf"controller: pid {os.getpid()} on {re.escape(socket.gethostname())} \(this machine\), up .+", line)
    shown = json.loads(_small_status(small_study, "--json"))
    assert shown["controller"]["where"] == "local" and shown["controller"]["this_machine"]
    assert shown["controller"]["usd"] is None
    # The pod's record stands as saved: no live lease says it bills on.
    assert shown["spend"]["controller_usd"] == pytest.approx(0.17)

    lease.release()
    assert "controller: none running" in _small_status(small_study).splitlines()
    assert json.loads(_small_status(small_study, "--json"))["controller"]["running"] is False


def test_status_json_of_a_study_not_started_has_no_controller(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "project")
    done = hpo_in_process(
        "status", "--study", "steady", "--studies", str(studies), "--json", env={"HPO_CACHE_DIR": str(tmp_path / "c")}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["controller"]["running"] is False
