"""``hpo status`` on a long study: a screenful by default (running, best, failed, recent), every trial with ``--all`` or ``--json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyfiles import hpo_in_process, make_workspace, study_config, study_volume

from hpo.cli._status import _spend_lines
from hpo.cost import Overhead
from hpo.journal import open_storage
from hpo.status import BEST_SHOWN, FAILED_SHOWN, TrialRow, rows_by_priority, spend_summary
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_QUEUED

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
