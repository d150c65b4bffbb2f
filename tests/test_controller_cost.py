"""The controller pod's own cost: its record in the study, and the cost keeper counting it in the spend and the budget.

A controller started by ``hpo run --remote`` runs on a CPU pod of its own,
which bills like any worker. The keeper is driven one poll at a time
(tests/controller_harness.py); the controller pod's bill is what the test
notes, as the controller would note its own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from controller_harness import Seam

from hpo.controller import _costs
from hpo.cost import (
    CONTROLLER_RECORD_PREFIX,
    ControllerCost,
    controller_usd,
    load_controller_costs,
    save_controller_cost,
)

POD = "abc123xyz"
RECORD = ControllerCost(pod=POD, usd=0.17, seconds=7500.0, rate_per_hour=0.0816, started_at=1_000_000.0, billed=False)


# ---------------------------------------------------------------------- the record


def test_a_record_round_trips_through_json_and_the_study() -> None:
    assert ControllerCost.from_json(RECORD.to_json()) == RECORD
    storage = optuna.storages.InMemoryStorage()
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "demo")
    save_controller_cost(storage, study_id, RECORD)
    other = ControllerCost("zz9plural", 0.03, 1200.0, 0.09, 990_000.0, billed=True)
    save_controller_cost(storage, study_id, other)
    save_controller_cost(storage, study_id, RECORD)  # rewritten, not added
    attrs = storage.get_study_system_attrs(study_id)
    assert attrs[f"{CONTROLLER_RECORD_PREFIX}{POD}"] == RECORD.to_json()
    assert load_controller_costs(attrs) == {POD: RECORD, "zz9plural": other}
    assert controller_usd(load_controller_costs(attrs).values()) == pytest.approx(0.20)
    assert controller_usd([]) == 0.0


def _attr(**changes: Any) -> dict[str, Any]:
    return {**RECORD.to_json(), **changes}


@pytest.mark.parametrize(
    "value",
    [
        _attr(usd=float("nan")),
        _attr(usd=float("inf")),
        _attr(usd=-0.01),
        _attr(seconds=-1.0),
        _attr(rate_per_hour="0.08"),
        _attr(started_at=None),
        _attr(usd=True),
        _attr(billed="yes"),
        _attr(pod=""),
        _attr(pod=7),
        _attr(pod="x" * 65),
        {key: value for key, value in RECORD.to_json().items() if key != "usd"},
        [RECORD.to_json()],
        "0.17",
        None,
    ],
)
def test_a_malformed_record_is_skipped_the_journal_is_on_a_shared_volume(value: Any) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        ControllerCost.from_json(value)
    attrs = {f"{CONTROLLER_RECORD_PREFIX}{POD}": value, f"{CONTROLLER_RECORD_PREFIX}good1": _attr(pod="good1")}
    assert list(load_controller_costs(attrs)) == ["good1"]


def test_a_record_under_another_pods_key_or_another_prefix_is_not_counted() -> None:
    attrs = {
        f"{CONTROLLER_RECORD_PREFIX}someotherpod": RECORD.to_json(),  # posing as another pod
        f"hpo:overhead:{POD}": RECORD.to_json(),
        "hpo:prices": {"source": "api"},
    }
    assert load_controller_costs(attrs) == {}


def test_an_estimate_bills_on_at_its_rate_and_a_billed_record_is_final() -> None:
    later = RECORD.started_at + RECORD.seconds + 3600.0
    assert RECORD.usd_at(later) == pytest.approx(0.17 + 0.0816)
    assert RECORD.usd_at(RECORD.started_at) == RECORD.usd  # never less than recorded
    billed = ControllerCost(POD, 0.25, 9000.0, 0.0816, 1_000_000.0, billed=True)
    assert billed.usd_at(later) == 0.25


# ---------------------------------------------------------------------- the cost keeper


def _started(tmp_path: Path, **study: Any) -> Seam:
    seam = Seam(tmp_path, **study)
    seam.controller.begin()
    return seam


def _own(seam: Seam, usd: float, rate: float = 0.0816, billed: bool = False, pod: str = POD) -> ControllerCost:
    """The controller pod's record as its controller would note it at the seam's clock."""
    return ControllerCost(pod, usd, 600.0, rate, seam.clock() - 600.0, billed)


def _saved(seam: Seam) -> dict[str, ControllerCost]:
    study = seam.study()
    return load_controller_costs(study._storage.get_study_system_attrs(study._study_id))


def test_the_controller_pod_counts_in_the_spend_and_is_saved_with_the_overhead_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seam = _started(tmp_path)
    costs = seam.controller.costs
    before = costs.spent_usd()
    saves: list[ControllerCost] = []
    real = _costs.save_controller_cost
    monkeypatch.setattr(_costs, "save_controller_cost", lambda s, i, r: (saves.append(r), real(s, i, r)))

    first = _own(seam, 0.0136)
    costs.note_controller(first)
    assert costs.controller_usd() == pytest.approx(0.0136)
    assert costs.spent_usd() == pytest.approx(before + 0.0136)
    costs.save({}, force=True)
    costs.save({}, force=True)  # unchanged: not written again
    seam.controller.storage.flush()
    assert saves == [first] and _saved(seam) == {POD: first}

    seam.clock.sleep(10)
    costs.note_controller(_own(seam, 0.0138))
    costs.save({})  # not due yet (every COST_SAVE_INTERVAL, as overhead records)
    assert saves == [first]
    seam.clock.sleep(_costs.COST_SAVE_INTERVAL)
    latest = _own(seam, 0.015)
    costs.note_controller(latest)
    costs.save({})
    seam.controller.storage.flush()
    assert saves == [first, latest] and _saved(seam) == {POD: latest}  # the latest record of the pod, one key
    assert costs.spent_usd() == pytest.approx(before + 0.015)


def test_an_estimate_never_replaces_the_pods_billed_record(tmp_path: Path) -> None:
    seam = _started(tmp_path)
    costs = seam.controller.costs
    billed = _own(seam, 0.02, billed=True)
    costs.note_controller(billed)
    costs.note_controller(_own(seam, 0.019))
    assert costs.controller_usd() == pytest.approx(0.02)


def test_earlier_runs_controller_pods_count_in_a_later_runs_spend(tmp_path: Path) -> None:
    seam = _started(tmp_path)
    seam.controller.costs.note_controller(_own(seam, 0.05, billed=True, pod="firstpod1"))
    seam.controller.costs.save({}, force=True)
    seam.controller.storage.flush()

    controller = seam.crash_and_restart()  # a new container of another pod (or the laptop) takes over
    costs = controller.costs
    assert costs.controller_usd() == pytest.approx(0.05)
    costs.note_controller(_own(seam, 0.01, pod="secondpod2"))
    assert costs.controller_usd() == pytest.approx(0.06)
    assert costs.spent_usd() == pytest.approx(0.06)  # no worker has billed
    costs.save({}, force=True)
    controller.storage.flush()
    assert set(_saved(seam)) == {"firstpod1", "secondpod2"}


def test_the_controller_pod_alone_can_reach_the_budget_and_stop_the_launches(tmp_path: Path) -> None:
    seam = _started(tmp_path, trials=2, budget="usd: 1.0")
    costs = seam.controller.costs
    costs.note_controller(_own(seam, 0.5, rate=0.0))
    assert costs.book({}) is None and costs.refusal() is None
    # $1800/h bills $0.50 in the one-second poll interval: the spend at the next look reaches the budget.
    costs.note_controller(_own(seam, 0.5, rate=1800.0))
    reason = costs.refusal()
    assert reason is not None and reason.startswith("budget.usd $1 reached") and "$1800.000/h billing" in reason
    seam.controller.cycle()
    assert (seam.controller.launch_stopped or "").startswith("budget.usd $1 reached")
    assert seam.backend.launched == []


def test_a_billed_controller_pod_counts_in_the_budget_but_bills_no_more(tmp_path: Path) -> None:
    seam = _started(tmp_path, trials=2, budget="usd: 1.0")
    costs = seam.controller.costs
    costs.note_controller(_own(seam, 0.999, rate=1800.0, pod="endedpod", billed=True))
    assert costs.refusal() is None  # $0.999 spent, nothing billing: a worker at $0/h may still start
    costs.note_controller(_own(seam, 0.001, rate=0.0))
    assert math.isclose(costs.spent_usd(), 1.0)
    assert (costs.refusal() or "").startswith("budget.usd $1 reached")
