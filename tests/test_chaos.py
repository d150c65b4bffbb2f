"""The chaos harness (``benchmarks/chaos.py``) and the fake RunPod's fault knobs it relies on.

The slow tests run the harness's short form as a user would (a subprocess,
``--json``) and hold the study to the census's invariants: nothing written
is lost, no finished result is discarded, no step is counted twice, no trial
is stuck RUNNING, no worker is left alive, ``hpo run`` never dies on its
own, and the study's cost equals the fake's bill to the cent. The fast ones
check the knobs (bursts of API faults over fake time, SIGKILL of a pod's
container) and that the fault plan is a function of the seed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from fake_runpod_support.processes import wait_no_pod_processes
from studyfiles import REPO, wait_for
from test_fake_runpod import api, create, fake, fake_options, volume_dir  # noqa: F401  (fixtures reused)

from hpo.fake_runpod import FAULT_KINDS, FakeRunPod

sys.path.insert(0, str(REPO / "benchmarks"))
from _chaos_plan import CONTROLLER_KILL, Plan, make_plan

CHAOS = REPO / "benchmarks" / "chaos.py"


# ---------------------------------------------------------------------- the fake's knobs


def test_a_fault_burst_fails_every_account_call_until_the_fake_clock_moves_past_it(fake: FakeRunPod) -> None:
    armed = fake_control(fake, "/_fake/faults", {"kind": "server_error", "times": 0, "seconds": 60})
    assert armed == {"kind": "server_error", "times": 0, "seconds": 60}
    assert [api(fake, "GET", "/v2/pods").status_code for _ in range(3)] == [500, 500, 500]
    assert fake.account.fault_burst_left("server_error") > 0
    fake.advance(61)
    assert api(fake, "GET", "/v2/pods").status_code == 200
    assert fake.account.fault_burst_left("server_error") == 0


def test_a_rate_limit_burst_answers_429_with_retry_after(fake: FakeRunPod) -> None:
    fake.account.inject_fault("rate_limit", 0, seconds=30)
    response = api(fake, "GET", "/v2/pods")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    fake.advance(31)
    assert api(fake, "GET", "/v2/pods").status_code == 200


def test_a_list_error_burst_hits_get_pods_alone(fake: FakeRunPod) -> None:
    assert "list_error" in FAULT_KINDS
    fake.account.inject_fault("list_error", 0, seconds=30)
    assert api(fake, "GET", "/v2/pods").status_code == 500
    assert api(fake, "GET", "/v2/catalog/gpus").status_code == 200
    fake.advance(31)
    assert api(fake, "GET", "/v2/pods").status_code == 200


def test_a_burst_refuses_a_negative_length(fake: FakeRunPod) -> None:
    assert fake_control(fake, "/_fake/faults", {"kind": "server_error", "seconds": -1}, expect=400)
    assert fake_control(fake, "/_fake/faults", {"kind": "server_error", "seconds": "long"}, expect=422)


def test_kill_sigkills_the_container_and_runpod_restarts_it(fake: FakeRunPod) -> None:
    pod = create(fake)
    assert fake_control(fake, f"/_fake/pods/{pod['id']}/kill", {}, expect=409)  # still provisioning: nothing to kill
    fake.wait_for(pod["id"], "RUNNING")
    wait_for(lambda: fake.pod(pod["id"]).pid is not None, 60, "the container to start")
    first = fake.pod(pod["id"]).pid
    killed = fake_control(fake, f"/_fake/pods/{pod['id']}/kill", {})
    assert killed["status"] == "RUNNING" and killed["exit_codes"] == [-9] and killed["pid"] is None
    fake.advance(20)  # the restart delay
    wait_for(lambda: fake.pod(pod["id"]).pid not in (None, first), 60, "the container to be restarted")
    assert fake.pod(pod["id"]).restarts == 1
    assert fake_control(fake, "/_fake/pods/nosuchpod/kill", {}, expect=404)
    fake.terminate(pod["id"])
    assert wait_no_pod_processes([pod["id"]]) == []


def fake_control(fake: FakeRunPod, path: str, body: dict[str, Any], expect: int = 200) -> Any:
    """POST to a ``/_fake`` route; the JSON body, asserting the status."""
    import requests

    headers = {"Authorization": f"Bearer {fake.api_key}"}  # the /_fake routes take the account's key
    response = requests.post(fake.url + path, json=body, headers=headers, timeout=10)
    assert response.status_code == expect, response.text
    return response.json()


# ---------------------------------------------------------------------- the plan


def test_the_fault_plan_is_a_function_of_the_seed() -> None:
    args = dict(trials=50, max_step=10, preempt_rate=0.3, controller_kills=3, worker_kills=3, deletes=3, api_faults=6)
    first, again, other = make_plan(seed=4, **args), make_plan(seed=4, **args), make_plan(seed=5, **args)
    assert first == again and first != other
    assert [first.fate(t, a) for t in range(50) for a in range(3)] == [again.fate(t, a) for t in range(50) for a in range(3)]
    assert sum(m.kind == CONTROLLER_KILL for m in first.moments) == 3
    assert {m.kind for m in first.moments} >= {"create_then_500", "rate_limit", "list_error", "server_error"}


def test_first_attempts_are_preempted_at_exactly_the_rate() -> None:
    plan = Plan(seed=3, preempt_rate=0.3, max_step=10)
    assert sum(plan.fate(t, 0).preempt_after is not None for t in range(50)) == 15
    assert all(1 <= f.preempt_after <= 3 for t in range(50) if (f := plan.fate(t, 0)).preempt_after is not None)


# ---------------------------------------------------------------------- the harness, end to end


def run_chaos(*args: str, timeout: float = 400) -> tuple[int, dict[str, Any], str]:
    """``python benchmarks/chaos.py <args> --json``: exit code, census, stderr (its progress lines).

    Past ``timeout`` the harness gets SIGTERM, so it still stops `hpo run` and the fake's pods.
    """
    proc = subprocess.Popen(
        [sys.executable, str(CHAOS), *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"chaos ran past {timeout}s:\n{err[-3000:]}")
    assert out.strip(), f"chaos printed no census (exit {proc.returncode}):\n{err[-3000:]}"
    return proc.returncode, json.loads(out), err


def assert_invariants(census: dict[str, Any], code: int, progress: str) -> None:
    """Every invariant of the census, each checked on its own so a failure names the figure (and shows the run)."""
    broken = "\n".join(census["broken"]) + "\n\nthe run:\n" + progress[-4000:]
    assert census["lost"] == 0, broken
    assert census["discarded"] == 0, broken
    assert census["wrong"] == 0, broken
    assert census["stuck"] == 0, broken
    assert census["live_workers"] == 0, broken
    assert census["controller_crashes"] == 0, broken
    assert census["finished"] == census["trials_budget"], broken
    assert not census["timed_out"], broken
    if census["cost_diff_usd"] is not None:
        assert abs(census["cost_diff_usd"]) < 0.01, broken
    assert census["ok"] and code == 0, broken


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_the_short_chaos_run_on_the_fake_runpod_keeps_every_invariant() -> None:
    code, census, progress = run_chaos("--short", "--seed", "1")
    # The faults were delivered: a run that hurt nothing proves nothing.
    assert census["controller_kills"] == 1 and census["controller_runs"] >= 2
    assert census["preemptions_delivered"] >= 1
    assert sum(census["api_faults"].values()) == 3
    assert census["worker_kills"] + census["deletes"] >= 1
    assert census["reports_written"] > 0 and census["cost_bill_usd"] > 0
    assert_invariants(census, code, progress)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_short_chaos_run_on_local_processes_keeps_every_invariant() -> None:
    code, census, progress = run_chaos("--short", "--seed", "1", "--backend", "local")
    assert census["controller_kills"] == 1 and census["preemptions_delivered"] >= 1
    assert census["cost_bill_usd"] is None
    assert_invariants(census, code, progress)
