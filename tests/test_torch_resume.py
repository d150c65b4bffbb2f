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

from hpo.agent import decode_checkpoint, encode_checkpoint
from hpo.code import publish_objectives
from hpo.events import CheckpointEvent, ReportEvent, drain
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import DirectoryVolume
from objectives import _torch_checkpoint as ckpt
from objectives._torch_training import EpochOrder, fixed_seed, warmup_linear_decay

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
    attrs = [e for e in events1 if e.type == "user_attr"]
    assert attrs and attrs[-1].value == next(e for e in _events(reference, 0) if e.type == "user_attr").value
    # One tensor file is left, the last checkpoint's; no temporary file.
    folder = resumed.local_path(LAYOUT.checkpoint_dir(0))
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.npz", f"torch-{MAX_STEP:09d}.npz"]


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
