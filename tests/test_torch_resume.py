"""PyTorch checkpoints and exact resumption, on the CPU.

The end-to-end test runs ``objectives/tiny_torch.py`` through the real agent
(``python -m hpo.agent`` subprocesses on a directory volume): the first
attempt is preempted with SIGTERM after a few checkpoints, the second resumes,
and their losses, step by step, must equal an uninterrupted run's exactly.
tiny_torch runs the update loop ``objectives/f5_tts.py`` runs, so this is the
F5 objective's resume logic under test. The other tests hold the checkpoint
helper's contract: everything round-trips, nothing is unpickled, a kill never
leaves a checkpoint that cannot be read.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpo.agent import AgentTrial, decode_checkpoint, encode_checkpoint
from hpo.code import publish_objectives
from hpo.events import CheckpointEvent, ReportEvent, drain
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import DirectoryVolume
from objectives import _torch_checkpoint as ckpt
from objectives import tiny_torch
from objectives._best_weights import BestWeights, read_npz
from objectives._checkpoint_timer import CheckpointTimer
from objectives._ema import ema_warmup_decay, restart_ema, warmup_ema_avg_fn
from objectives._torch_training import EVAL_SEEDS, EpochOrder, fixed_seed, mean_evaluation, warmup_linear_decay

REPO = Path(__file__).resolve().parent.parent
STUDY = "torch-resume"
LAYOUT = StudyLayout(STUDY)

# The objective the first attempt runs: tiny_torch, pausing after each of its
# checkpoints so that the test's SIGTERM lands between two of them. Only the
# timing changes: the numbers are tiny_torch's own.
PACED = '''
import time
from objectives import tiny_torch

class _Paced:
    def __init__(self, trial):
        self._trial = trial
    def __getattr__(self, name):
        return getattr(self._trial, name)
    def save_checkpoint(self, state, step):
        self._trial.save_checkpoint(state, step)
        if self._trial.attempt == 0:
            time.sleep(0.4)

def objective(trial):
    return tiny_torch.objective(_Paced(trial))
'''

PARAMS = {"lr": 0.01, "batch_size": 32, "warmup_updates": 20, "hidden": 48}
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
    "warmup_updates": {"type": "int", "low": 0, "high": 50},
    "hidden": {"type": "int", "low": 16, "high": 128},
}
MAX_STEP = 240
EVAL_INTERVAL = 10


def _volume(root: Path, objective: str) -> DirectoryVolume:
    """A volume with the objectives snapshot and trial 0's spec."""
    folder = root / "objectives"
    shutil.copytree(REPO / "objectives", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "paced.py").write_text(PACED)
    volume = DirectoryVolume(root / "volume")
    sha = publish_objectives(volume, STUDY, folder)
    TrialSpec(
        study=STUDY, trial=0, objective=objective, params=PARAMS, search_space=SPACE,
        max_step=MAX_STEP, eval_interval=EVAL_INTERVAL, step_unit="update", code=sha,
    ).write(volume, LAYOUT.spec(0))
    return volume


def _agent(volume: DirectoryVolume, attempt: int, cache: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPO_", "RUNPOD_"))}
    env.update(
        HPO_STUDY=STUDY, HPO_TRIAL="0", HPO_ATTEMPT=str(attempt), HPO_VOLUME=str(volume.root),
        HPO_CACHE_DIR=str(cache), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
    )
    log = open(volume.root / f"agent-{attempt}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "hpo.agent"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=volume.root)


def _events(volume: DirectoryVolume, attempt: int) -> list[Any]:
    return drain(volume, LAYOUT.events(0, attempt))


def _first_reports(volume: DirectoryVolume, attempts: int) -> dict[int, float]:
    firsts: dict[int, float] = {}
    for attempt in range(attempts):
        for event in _events(volume, attempt):
            if isinstance(event, ReportEvent):
                firsts.setdefault(event.step, event.value)
    return firsts


def _wait(proc: subprocess.Popen[bytes], volume: DirectoryVolume, attempt: int, timeout: float = 60) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError((volume.root / f"agent-{attempt}.log").read_text()) from None


@pytest.mark.slow  # three real agent processes, each importing torch and training 240 updates
def test_a_preempted_trial_resumes_exactly_where_an_uninterrupted_one_would_be(tmp_path: Path) -> None:
    reference = _volume(tmp_path / "reference", "tiny_torch")
    resumed = _volume(tmp_path / "resumed", "paced")
    straight = _agent(reference, 0, tmp_path / "cache")
    first = _agent(resumed, 0, tmp_path / "cache")
    deadline = time.monotonic() + 60
    while sum(isinstance(e, CheckpointEvent) for e in _events(resumed, 0)) < 3:
        assert first.poll() is None and time.monotonic() < deadline, (resumed.root / "agent-0.log").read_text()
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # what a spot preemption sends
    assert _wait(first, resumed, 0) == 143
    events0 = _events(resumed, 0)
    assert events0[-1].type == "preempted"
    last_checkpoint = max(e.step for e in events0 if isinstance(e, CheckpointEvent))
    assert EVAL_INTERVAL * 3 <= last_checkpoint < MAX_STEP

    second = _agent(resumed, 1, tmp_path / "cache")
    assert _wait(second, resumed, 1) == 0, (resumed.root / "agent-1.log").read_text()
    assert _wait(straight, reference, 0) == 0, (reference.root / "agent-0.log").read_text()
    events1 = _events(resumed, 1)
    # From the last checkpoint attempt 0 wrote (a SIGTERM between writing one and its event would make it the next).
    assert events1[0].type == "start" and events1[0].resume_step in (last_checkpoint, last_checkpoint + EVAL_INTERVAL)
    assert events1[-1].type == "done"
    done = _events(reference, 0)[-1]
    assert done.type == "done"

    expected = _first_reports(reference, 1)
    assert sorted(expected) == list(range(EVAL_INTERVAL, MAX_STEP + 1, EVAL_INTERVAL))
    assert _first_reports(resumed, 2) == expected  # the same steps, the same losses, bit for bit
    assert events1[-1].value == done.value
    attrs = {e.key: e.value for e in events1 if e.type == "user_attr"}
    assert attrs and attrs == {e.key: e.value for e in _events(reference, 0) if e.type == "user_attr"}
    # One tensor file is left, the last checkpoint's, and the best weights; no temporary file.
    folder = resumed.local_path(LAYOUT.checkpoint_dir(0))
    assert folder is not None
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["checkpoint.npz", f"torch-{MAX_STEP:09d}.npz", f"best-{attrs['best_step']:09d}.npz"]
    )
    assert attrs["best_weights"] == f"best-{attrs['best_step']:09d}.npz"


# ---------------------------------------------------------------- the checkpoint helper


class MemoryTrial:
    """The trial's checkpoint API, kept in memory (still encoded as the agent encodes it)."""

    def __init__(self, folder: Path | None) -> None:
        self.checkpoint_dir = folder
        self.blob: bytes | None = None
        self.step = 0

    def save_checkpoint(self, state: dict[str, Any], step: int) -> None:
        self.blob = encode_checkpoint(state, step)
        self.step = step

    def load_checkpoint(self) -> dict[str, Any] | None:
        return None if self.blob is None else decode_checkpoint(self.blob)[0]


def _training(seed: int) -> dict[str, Any]:
    """F5-TTS's kinds of state: AdamW, SequentialLR(LinearLR, LinearLR), an EMA, a bf16 buffer, a generator."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
    model.register_buffer("bf16", torch.randn(3).to(torch.bfloat16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95))
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-8, end_factor=1.0, total_iters=5)
    decay = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=1e-8, total_iters=20)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, decay], milestones=[5])
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    return {"model": model, "optimizer": optimizer, "scheduler": scheduler, "ema": ema,
            "generators": {"data": torch.Generator().manual_seed(seed)}}


def _step(parts: dict[str, Any]) -> float:
    model, optimizer = parts["model"], parts["optimizer"]
    x = torch.randn(5, 4, generator=parts["generators"]["data"])
    # Draw from every global RNG, as F5-TTS does (Python random for CFG drop-outs, torch for noise).
    loss = model(x).pow(2).mean() + random.random() * 0 + float(np.random.rand()) * 0
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    parts["scheduler"].step()
    parts["ema"].update_parameters(model)
    return loss.item()


@pytest.mark.parametrize("where", ["folder", "inline"])
def test_training_state_round_trips_and_training_continues_identically(tmp_path: Path, where: str) -> None:
    trial = MemoryTrial(tmp_path / "ckpt" if where == "folder" else None)
    parts = _training(0)
    for _ in range(7):
        _step(parts)
    ckpt.save_training_state(trial, 7, **parts, extra={"best": 0.5, "note": "x"})
    after = [_step(parts) for _ in range(5)]
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    fresh = _training(1)  # other initial weights and RNG: all of it must come from the checkpoint
    random.seed(99)
    extra = ckpt.load_training_state(trial, **fresh)
    assert extra == {"best": 0.5, "note": "x"}
    assert fresh["model"].bf16.dtype == torch.bfloat16
    assert fresh["optimizer"].state_dict()["param_groups"][0]["betas"] == (0.8, 0.95)
    assert [_step(fresh) for _ in range(5)] == after
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws
    for a, b in zip(parts["ema"].state_dict().values(), fresh["ema"].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    if where == "folder":
        assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["torch-000000007.npz"]


def test_nothing_is_unpickled_on_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trial = MemoryTrial(tmp_path / "ckpt")
    parts = _training(0)
    _step(parts)
    ckpt.save_training_state(trial, 1, **parts)

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a checkpoint was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert ckpt.load_training_state(trial, **_training(1)) == {}


def test_an_older_tensor_file_goes_only_after_the_new_checkpoint_names_its_successor(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    trial = MemoryTrial(folder)
    parts = _training(0)
    ckpt.save_training_state(trial, 1, **parts)
    (folder / ".torch-000000002.npz.999.tmp").write_bytes(b"left by a killed writer")
    record = trial.blob

    class Killed(BaseException):
        pass

    def killed(*_: Any, **__: Any) -> None:
        raise Killed

    original = trial.save_checkpoint
    trial.save_checkpoint = killed  # type: ignore[method-assign]  # dies after the tensor file, before the record
    with pytest.raises(Killed):
        ckpt.save_training_state(trial, 2, **parts)
    assert trial.blob == record and (folder / "torch-000000001.npz").is_file()
    assert ckpt.load_training_state(trial, **_training(1)) == {}  # the old checkpoint is whole

    trial.save_checkpoint = original  # type: ignore[method-assign]
    ckpt.save_training_state(trial, 3, **parts)
    assert sorted(p.name for p in folder.iterdir()) == ["torch-000000003.npz"]


def test_a_write_killed_midway_leaves_no_temp_and_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "torch-000000001.npz"
    ckpt.write_tensor_file(path, [torch.ones(3)])
    before = path.read_bytes()
    calls = []

    def write_array(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # any BaseException: the agent's preemption is one
        return real(*args, **kwargs)

    real = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", write_array)
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_tensor_file(path, [torch.zeros(3), torch.zeros(4)])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_missing_tensor_file_is_named(tmp_path: Path) -> None:
    trial = MemoryTrial(tmp_path / "ckpt")
    ckpt.save_training_state(trial, 4, **_training(0))
    (tmp_path / "ckpt" / "torch-000000004.npz").unlink()
    with pytest.raises(ckpt.CheckpointError, match="torch-000000004.npz is missing"):
        ckpt.load_training_state(trial, **_training(0))


def test_a_checkpoint_of_other_parts_is_refused(tmp_path: Path) -> None:
    trial = MemoryTrial(tmp_path)
    parts = _training(0)
    ckpt.save_training_state(trial, 1, model=parts["model"], optimizer=parts["optimizer"])
    with pytest.raises(ckpt.CheckpointError, match="holds"):
        ckpt.load_training_state(trial, **_training(0))


def test_unstorable_values_are_refused_by_path(tmp_path: Path) -> None:
    class Weird(torch.nn.Module):
        def state_dict(self, *args: Any, **kwargs: Any) -> Any:
            return {"w": torch.ones(1), "fn": print}

    with pytest.raises(TypeError, match=r"model.fn: cannot store a builtin_function_or_method without pickle"):
        ckpt.save_training_state(MemoryTrial(tmp_path), 1, model=Weird())


# ---------------------------------------------------------------- data order, schedule, seeds


def test_the_data_order_depends_on_the_update_number_alone() -> None:
    order = EpochOrder(103, 10, seed=5)
    assert order.updates_per_epoch == 10
    straight = list(order.updates(1, 35))
    assert list(EpochOrder(103, 10, seed=5).updates(17, 35)) == straight[16:]
    epoch0 = [i for items in straight[:10] for i in items]
    assert len(set(epoch0)) == 100 and all(0 <= i < 103 for i in epoch0)
    assert straight[:10] != straight[10:20]  # a fresh permutation every epoch
    assert list(EpochOrder(103, 10, seed=6).updates(1, 10)) != straight[:10]
    with pytest.raises(ValueError, match="cannot fill"):
        EpochOrder(3, 4, seed=0)


def test_the_schedule_warms_up_then_decays_like_f5_tts() -> None:
    assert warmup_linear_decay(0, 10, 100) == pytest.approx(1e-8)
    assert warmup_linear_decay(5, 10, 100) == pytest.approx(0.5)
    assert warmup_linear_decay(10, 10, 100) == 1.0
    assert warmup_linear_decay(55, 10, 100) == pytest.approx(0.5)
    assert warmup_linear_decay(100, 10, 100) == pytest.approx(1e-8)
    assert warmup_linear_decay(120, 10, 100) == pytest.approx(1e-8)
    assert warmup_linear_decay(0, 0, 100) == 1.0


def test_an_evaluation_draws_the_same_numbers_and_leaves_the_training_rng_alone() -> None:
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    ahead = ckpt.capture_rng()
    expected = (torch.rand(2).tolist(), random.random(), np.random.rand())
    ckpt.restore_rng(ahead)
    with fixed_seed(11):
        inside = (torch.rand(2).tolist(), random.random(), np.random.rand())
    with fixed_seed(11):
        assert (torch.rand(2).tolist(), random.random(), np.random.rand()) == inside
    assert (torch.rand(2).tolist(), random.random(), np.random.rand()) == expected


# ---------------------------------------------------------------- checkpoints by time, the EMA, the best weights
#
# In-process runs of tiny_torch through the agent's trial object on a directory volume. Time is a fake
# clock that moves SECONDS_PER_EVALUATION at each report: nothing depends on how fast this machine is.

SECONDS_PER_EVALUATION = 10.0


class _EvalClock:
    """Monotonic seconds that move only when an evaluation is reported."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Preempted(BaseException):
    """What a SIGTERM raises in the agent: not an Exception, so nothing in the objective swallows it."""


class _Timed:
    """The trial, as tiny_torch sees it: each report moves the clock; optionally preempted at a step."""

    def __init__(self, trial: AgentTrial, clock: _EvalClock, preempt_at: int | None = None) -> None:
        self._trial, self._clock, self._preempt_at = trial, clock, preempt_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def report(self, value: float, step: int) -> None:
        self._clock.now += SECONDS_PER_EVALUATION
        self._trial.report(value, step)
        if step == self._preempt_at:
            raise _Preempted


def _tiny_trial(
    root: Path, *, attempt: int = 0, checkpoint_seconds: float | None = None, params: dict[str, Any] | None = None,
    space: dict[str, Any] | None = None, max_step: int = 120,
) -> tuple[AgentTrial, list[Any]]:
    events: list[Any] = []
    spec = TrialSpec(
        study=STUDY, trial=0, objective="tiny_torch", params=params or PARAMS, search_space=space or SPACE,
        max_step=max_step, eval_interval=EVAL_INTERVAL, step_unit="update", checkpoint_seconds=checkpoint_seconds,
    )
    return AgentTrial(spec, attempt, DirectoryVolume(root), events.append), events


def _reports(events: list[Any]) -> dict[int, float]:
    return {e.step: e.value for e in events if isinstance(e, ReportEvent)}


def _attrs(events: list[Any]) -> dict[str, Any]:
    return {e.key: e.value for e in events if e.type == "user_attr"}


def test_the_timer_is_due_an_interval_after_the_last_checkpoint_or_the_start() -> None:
    clock = _EvalClock()
    timer = CheckpointTimer(900.0, clock)
    clock.now = 899.0
    assert not timer.due()
    clock.now = 900.0
    assert timer.due()
    timer.saved()
    clock.now = 1700.0
    assert not timer.due()
    clock.now = 1800.0
    assert timer.due()
    every = CheckpointTimer(None, clock)
    assert every.due()
    every.saved()
    assert every.due()
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="`interval` must be a positive number of seconds"):
            CheckpointTimer(bad, clock)


def test_the_trial_carries_the_studys_checkpoint_interval(tmp_path: Path) -> None:
    assert _tiny_trial(tmp_path, checkpoint_seconds=900)[0].checkpoint_seconds == 900.0
    assert _tiny_trial(tmp_path)[0].checkpoint_seconds is None


def test_checkpoints_come_by_time_and_after_the_last_update_while_every_evaluation_is_reported(tmp_path: Path) -> None:
    trial, events = _tiny_trial(tmp_path / "timed", checkpoint_seconds=25)
    clock = _EvalClock()
    tiny_torch.objective(_Timed(trial, clock), clock=clock)
    # Evaluations at 10 s, 20 s, 30 s, ...: the first one 25 s or more after the last checkpoint checkpoints.
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [30, 60, 90, 120]
    assert sorted(_reports(events)) == list(range(10, 121, 10))

    trial, events = _tiny_trial(tmp_path / "every")  # no checkpoint_seconds: at every evaluation, as before
    tiny_torch.objective(trial)
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == list(range(10, 121, 10))


def test_a_trial_preempted_between_timed_checkpoints_resumes_from_the_last_one_exactly(tmp_path: Path) -> None:
    straight, straight_events = _tiny_trial(tmp_path / "straight", checkpoint_seconds=25)
    clock = _EvalClock()
    value = tiny_torch.objective(_Timed(straight, clock), clock=clock)

    first, first_events = _tiny_trial(tmp_path / "resumed", checkpoint_seconds=25)
    clock = _EvalClock()
    with pytest.raises(_Preempted):
        tiny_torch.objective(_Timed(first, clock, preempt_at=80), clock=clock)
    assert max(e.step for e in first_events if isinstance(e, CheckpointEvent)) == 60
    second, second_events = _tiny_trial(tmp_path / "resumed", attempt=1, checkpoint_seconds=25)
    clock = _EvalClock()
    assert tiny_torch.objective(_Timed(second, clock), clock=clock) == value
    assert second.resume_step == 120
    rest = _reports(second_events)
    assert sorted(rest) == list(range(70, 121, 10))  # 70 and 80 again: the controller keeps a step's first report
    assert rest == {step: v for step, v in _reports(straight_events).items() if step >= 70}  # bit for bit
    assert _attrs(second_events) == _attrs(straight_events)


def test_the_best_evaluations_weights_are_kept_and_score_the_returned_value(tmp_path: Path) -> None:
    import torch.nn.functional as F

    from objectives.digits_mlp import load_data

    trial, events = _tiny_trial(tmp_path)
    value = tiny_torch.objective(trial)
    reports, attrs = _reports(events), _attrs(events)
    assert value == min(reports.values()) == reports[attrs["best_step"]]
    folder = trial.checkpoint_dir
    assert folder is not None and attrs["best_weights"] == f"best-{attrs['best_step']:09d}.npz"
    model = tiny_torch.build_model(64, int(PARAMS["hidden"]))
    model.load_state_dict(read_npz(folder / attrs["best_weights"]))
    _, _, x_val, y_val = load_data()
    with torch.no_grad():
        loss = F.cross_entropy(model.eval()(torch.from_numpy(x_val).float()), torch.from_numpy(y_val)).item()
    assert loss == pytest.approx(value, rel=1e-6)


def test_what_is_evaluated_is_the_ema(tmp_path: Path) -> None:
    # The EMA does not feed back into training: were the online model evaluated, the EMA's decay could not
    # change a reported value. It does: a decay of 0 makes the EMA the online model, 0.95 an average.
    space = {**SPACE, "ema_decay": {"type": "float", "low": 0.0, "high": 0.99}}
    values = {}
    for decay in (0.0, 0.95):
        trial, events = _tiny_trial(tmp_path / str(decay), params={**PARAMS, "ema_decay": decay}, space=space, max_step=30)
        tiny_torch.objective(trial)
        values[decay] = _reports(events)
    assert values[0.0].keys() == values[0.95].keys() and all(values[0.0][s] != values[0.95][s] for s in values[0.0])


def test_the_ema_starts_with_the_run_and_warms_up_like_f5_ttss() -> None:
    from torch.optim.swa_utils import AveragedModel

    assert ema_warmup_decay(0, 0.9999) == 0.0
    assert ema_warmup_decay(1, 0.9999) == pytest.approx(1 - 2 ** (-2 / 3))
    assert ema_warmup_decay(399, 0.9999) == pytest.approx(0.9816, abs=1e-4)  # F5's EMA 500 updates in
    assert ema_warmup_decay(9899, 0.9999) == pytest.approx(0.9978, abs=1e-4)  # and 10,000 updates in
    assert ema_warmup_decay(10**9, 0.9999) == 0.9999  # capped at beta
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    ema = AveragedModel(model, avg_fn=warmup_ema_avg_fn(0.9))
    ema.update_parameters(model)
    assert torch.equal(ema.module.weight, model.weight)  # the first update copies the online weights
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    decay = 1 - 2 ** (-2 / 3)
    assert torch.allclose(ema.module.weight, before * decay + model.weight * (1 - decay))


def test_restarting_an_ema_pytorch_ema_zeroes_its_count_and_recopies_the_online_weights() -> None:
    ema_pytorch = pytest.importorskip("ema_pytorch", reason="ema_pytorch comes with F5-TTS, in the trial image")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    ema = ema_pytorch.EMA(model, include_online_model=False)  # F5-TTS's Trainer's settings
    ema.step.fill_(1_250_000)  # as loaded from F5-TTS's published weights
    ema.initted.fill_(True)
    with torch.no_grad():
        ema.ema_model.weight.zero_()
    restart_ema(ema)
    assert int(ema.step) == 0 and not bool(ema.initted)
    ema.update()
    assert torch.equal(ema.ema_model.weight, model.weight)
    # Its decay now follows the schedule tiny_torch's EMA uses (counted in ema_pytorch's steps after its 100 of copying).
    for step in (150, 500, 10_000):
        ema.step.fill_(step)
        assert ema.get_current_decay() == pytest.approx(ema_warmup_decay(step - 101, 0.9999))


def test_restart_ema_needs_only_the_counters() -> None:
    class Counters:
        step = torch.tensor(1_250_000)
        initted = torch.tensor(True)

    ema = Counters()
    restart_ema(ema)
    assert int(ema.step) == 0 and not bool(ema.initted)


def test_an_evaluation_is_the_mean_over_fixed_seeds() -> None:
    def draw() -> float:
        return float(torch.rand(1))

    expected = []
    for seed in EVAL_SEEDS:
        with fixed_seed(seed):
            expected.append(draw())
    assert len(set(expected)) == len(EVAL_SEEDS) >= 3
    assert mean_evaluation(draw, EVAL_SEEDS) == math.fsum(expected) / len(expected) == mean_evaluation(draw, EVAL_SEEDS)


def test_best_weights_are_copied_when_offered_and_written_at_the_next_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    trial = MemoryTrial(folder)
    parts = _training(0)
    model = parts["model"]
    best = BestWeights(lambda: {k: v for k, v in model.state_dict().items() if k != "bf16"})  # NumPy has no bfloat16
    assert best.offer(0.5, 10) and not best.offer(0.5, 20) and not best.offer(0.7, 30)
    offered = {k: v.clone() for k, v in model.state_dict().items() if k != "bf16"}
    _step(parts)  # the weights move on after the evaluation: the copy must not
    record = best.save(folder)
    ckpt.save_training_state(trial, 30, **parts, extra=record)
    best.forget_older(folder)
    assert record == {"best": 0.5, "best_step": 10, "best_file": "best-000000010.npz"}
    saved = read_npz(folder / "best-000000010.npz")
    assert saved.keys() == offered.keys() and all(torch.equal(saved[k], offered[k]) for k in offered)
    assert best.save(folder) == record  # nothing new: nothing written again

    resumed = BestWeights(lambda: model.state_dict())
    resumed.restore(ckpt.load_training_state(trial, **_training(1)) or {})
    assert (resumed.value, resumed.step, resumed.file) == (0.5, 10, "best-000000010.npz")


def _write_raw(path: Path, weights: Any) -> None:
    """Another format (as safetensors is for F5-TTS): the keeper writes whatever its writer writes."""
    path.write_bytes(b"".join(t.detach().contiguous().view(torch.uint8).numpy().tobytes() for t in weights.values()))


def test_an_older_best_file_goes_only_after_the_record_names_the_new_one(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    trial = MemoryTrial(folder)
    parts = _training(0)
    best = BestWeights(lambda: parts["model"].state_dict(), suffix=".bin", write=_write_raw)
    best.offer(0.5, 10)
    ckpt.save_training_state(trial, 10, **parts, extra=best.save(folder))
    best.forget_older(folder)

    class Killed(BaseException):
        pass

    def killed(*_: Any, **__: Any) -> None:
        raise Killed

    best.offer(0.4, 20)
    original = trial.save_checkpoint
    trial.save_checkpoint = killed  # type: ignore[method-assign]  # dies after the best file, before the record
    with pytest.raises(Killed):
        ckpt.save_training_state(trial, 20, **parts, extra=best.save(folder))
    extra = ckpt.load_training_state(trial, **_training(1))
    assert extra is not None and extra["best_file"] == "best-000000010.bin" and (folder / extra["best_file"]).is_file()

    trial.save_checkpoint = original  # type: ignore[method-assign]
    ckpt.save_training_state(trial, 20, **parts, extra=best.save(folder))
    best.forget_older(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["best-000000020.bin", "torch-000000020.npz"]


def test_without_a_local_folder_the_best_weights_ride_in_the_checkpoint() -> None:
    trial = MemoryTrial(None)
    parts = _training(0)
    best = BestWeights(lambda: parts["model"].state_dict())
    best.offer(0.5, 10)
    ckpt.save_training_state(trial, 10, **parts, extra=best.save(None))
    resumed = BestWeights(lambda: parts["model"].state_dict())
    resumed.restore(ckpt.load_training_state(trial, **_training(1)) or {})
    record = resumed.save(None)
    assert record["best_file"] == "" and record["best_step"] == 10
    weights = record["best_weights"]
    assert all(torch.equal(weights[k], v) for k, v in parts["model"].state_dict().items())


def test_npz_weights_refuse_a_dtype_numpy_lacks_by_name(tmp_path: Path) -> None:
    from objectives._best_weights import write_npz

    with pytest.raises(TypeError, match="'half' is torch.bfloat16, which NumPy lacks; write safetensors"):
        write_npz(tmp_path / "w.npz", {"full": torch.ones(2), "half": torch.ones(2, dtype=torch.bfloat16)})
