"""A seeded study stays reproducible across interruptions and never proposes a trial's parameters twice.

Issue 10, item 8: Optuna seeds a sampler once, when it is built, so each
`hpo run` restarted the stream, and after a Ctrl-C trials 6-9 got exactly
trials 0-3's parameters (on RunPod, money paid twice).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_harness import Seam


def _finish_running_trials(seam: Seam) -> None:
    """Every live worker reports once and finishes; then one poll takes the results in."""
    for ref in list(seam.backend.alive):
        seam.write(ref.trial, {"type": "report", "step": 1, "value": 0.5}, {"type": "done", "value": 0.5}, attempt=ref.attempt)
        seam.backend.gone(ref.trial, ref.attempt)
    seam.controller.cycle()


def _params(seam: Seam) -> list[float]:
    assert seam.controller.study is not None
    return [t.params["x"] for t in seam.controller.study.get_trials(deepcopy=False)]


def _run(seam: Seam, polls: int) -> None:
    for _ in range(polls):
        _finish_running_trials(seam)


@pytest.mark.parametrize("sampler", ["{type: random, seed: 7}", "{type: tpe, seed: 7, n_startup_trials: 3}"])
def test_an_interrupted_seeded_study_proposes_what_an_uninterrupted_one_does(tmp_path: Path, sampler: str) -> None:
    whole = Seam(tmp_path / "whole", sampler=sampler, trials=6, concurrency=2)
    whole.controller.begin()
    whole.controller.cycle()
    _run(whole, 3)

    split = Seam(tmp_path / "split", sampler=sampler, trials=6, concurrency=2)
    split.controller.begin()
    split.controller.cycle()
    _run(split, 1)  # 4 trials asked, 2 finished; then Ctrl-C and `hpo run` again
    split.crash_and_restart()
    split.controller.cycle()
    _run(split, 3)

    assert len(_params(split)) == 6
    assert len(set(_params(split))) == 6  # nothing proposed twice
    assert _params(split) == _params(whole)


def test_different_seeds_give_different_streams(tmp_path: Path) -> None:
    one = Seam(tmp_path / "one", sampler="{type: random, seed: 1}", trials=2, concurrency=2)
    two = Seam(tmp_path / "two", sampler="{type: random, seed: 2}", trials=2, concurrency=2)
    for seam in (one, two):
        seam.controller.begin()
        seam.controller.cycle()
    assert _params(one) != _params(two)
