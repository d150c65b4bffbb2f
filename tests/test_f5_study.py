"""Study ``f5-lr`` as shipped in studies.yaml: its space, its GPUs, its pruner and its checkpoint timing.

The study's comments make claims (every batch fits every listed GPU, the
batch is fixed so the fidelity is fair, what the percentile pruner does, that
checkpoints come by time); these tests hold the file to them. The pruner's
behaviour is Optuna's own, run on an in-memory study with the pruner the
study builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from controller_harness import Seam
from optuna.trial import TrialState, create_trial

from hpo.config import StudyConfig, load_study_template
from hpo.errors import ConfigError
from hpo.fake_runpod._catalog import GPU_TYPES
from hpo.spec import TrialSpec
from objectives import f5_tts as f5
from objectives._gpu import GIB, GpuInfo

REPO = Path(__file__).resolve().parent.parent
STEPS = range(500, 10_001, 500)


@pytest.fixture(scope="module")
def study() -> StudyConfig:
    return load_study_template(REPO / "studies.yaml", "f5-lr")


def _space(study: StudyConfig) -> dict[str, Any]:
    assert study.search_space is not None  # f5-lr declares its space in studies.yaml
    return dict(study.search_space)


def _memory_as_torch_reports(gpu_type: str, ecc: bool) -> GpuInfo:
    """The least total memory torch may report for a RunPod GPU type: its nominal GB, less ECC's 1/16 if on."""
    nominal = GPU_TYPES[gpu_type].memory_gb  # RunPod's memoryInGb, as the fake's catalog copies it
    return GpuInfo(gpu_type, int(nominal * GIB * (15 / 16 if ecc else 1)))


# ---------------------------------------------------------------- the space and the GPUs


def test_the_space_searches_the_learning_rate_and_warm_up_with_one_batch_size(study: StudyConfig) -> None:
    space = _space(study)
    assert set(space) == {"learning_rate", "batch_size_per_gpu", "num_warmup_updates"}
    lr = space["learning_rate"].to_distribution()
    assert isinstance(lr, optuna.distributions.FloatDistribution)
    assert (lr.low, lr.high, lr.log) == (3e-6, 1e-4, True)
    batch = space["batch_size_per_gpu"].to_distribution()
    assert isinstance(batch, optuna.distributions.CategoricalDistribution)
    assert len(batch.choices) == 1  # fixed: every trial's max_step updates are the same audio budget


@pytest.mark.parametrize("ecc", [False, True])
def test_every_batch_choice_fits_every_listed_gpu_by_f5_ttss_rule(study: StudyConfig, ecc: bool) -> None:
    batch = _space(study)["batch_size_per_gpu"].to_distribution()
    assert isinstance(batch, optuna.distributions.CategoricalDistribution)
    gpu_types = study.compute.gpu_types  # type: ignore[attr-defined]  # the runpod compute model's field
    assert gpu_types
    for gpu_type in gpu_types:
        gpu = _memory_as_torch_reports(gpu_type, ecc)
        for frames in batch.choices:
            assert isinstance(frames, int)
            f5.check_batch_fits(frames, gpu)  # what each attempt's objective checks on its GPU


def test_the_old_batch_choices_would_not_have_fit_the_smallest_gpu() -> None:
    a4000 = _memory_as_torch_reports("NVIDIA RTX A4000", ecc=False)
    with pytest.raises(ValueError, match="does not fit"):
        f5.check_batch_fits(6400, a4000)


# ---------------------------------------------------------------- checkpoints by time


def test_the_study_evaluates_every_500_updates_and_checkpoints_every_15_minutes(study: StudyConfig) -> None:
    assert (study.fidelity.max_step, study.fidelity.eval_interval) == (10_000, 500)
    assert study.fidelity.checkpoint_seconds == 900.0


def _with_fidelity(tmp_path: Path, **fidelity: Any) -> Path:
    document = yaml.safe_load((REPO / "studies.yaml").read_text())
    document["studies"]["f5-lr"]["fidelity"].update(fidelity)
    path = tmp_path / "studies.yaml"
    path.write_text(yaml.safe_dump({"studies": {"f5-lr": document["studies"]["f5-lr"]}}))
    return path


@pytest.mark.parametrize("bad", [0, -5, "15m", True])
def test_a_checkpoint_interval_that_is_not_a_positive_number_is_refused_by_name(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"key 'fidelity.checkpoint_seconds': must be a number > 0"):
        load_study_template(_with_fidelity(tmp_path, checkpoint_seconds=bad), "f5-lr")


def test_without_a_checkpoint_interval_a_study_checkpoints_at_every_evaluation(tmp_path: Path) -> None:
    path = _with_fidelity(tmp_path)
    document = yaml.safe_load(path.read_text())
    del document["studies"]["f5-lr"]["fidelity"]["checkpoint_seconds"]
    path.write_text(yaml.safe_dump(document))
    assert load_study_template(path, "f5-lr").fidelity.checkpoint_seconds is None


def test_the_controller_carries_the_interval_to_the_trials_spec(tmp_path: Path) -> None:
    seam = Seam(tmp_path)
    fidelity = seam.config.fidelity.model_copy(update={"checkpoint_seconds": 900.0})
    seam.config = seam.config.model_copy(update={"fidelity": fidelity})
    controller = seam.new_controller("cache-2")
    controller.begin()
    controller.cycle()  # launches trial 0, its spec written first
    assert TrialSpec.read(seam.volume, seam.layout.spec(0)).checkpoint_seconds == 900.0


# ---------------------------------------------------------------- what the pruner does


def _study(config: StudyConfig, completed: Sequence[float], pruned: Sequence[float] = ()) -> optuna.Study:
    """An in-memory study with the f5-lr pruner, and trials that reported the same value at every step."""
    study = optuna.create_study(direction=config.direction, pruner=config.build_pruner())
    for value in completed:
        study.add_trial(create_trial(value=value, intermediate_values=dict.fromkeys(STEPS, value)))
    for value in pruned:
        study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={500: value, 1000: value, 1500: value}))
    return study


def _pruned(study: optuna.Study, reports: dict[int, float]) -> bool:
    trial = study.ask()
    for step, value in reports.items():
        trial.report(value, step)
    return trial.should_prune()


def _curve(value: float, until: int) -> dict[int, float]:
    return {step: value for step in STEPS if step <= until}


def test_a_trial_worse_than_two_thirds_of_the_completed_trials_is_pruned(study: StudyConfig) -> None:
    completed = [1.0, 1.1, 1.2, 1.3]  # the 67th percentile at a step: 1.201
    assert _pruned(_study(study, completed), _curve(1.25, 2000))
    assert not _pruned(_study(study, completed), _curve(1.19, 2000))


def test_nothing_is_pruned_until_four_trials_have_completed(study: StudyConfig) -> None:
    assert not _pruned(_study(study, [1.0, 1.1, 1.2]), _curve(9.0, 2000))


def test_pruned_trials_never_raise_the_bar(study: StudyConfig) -> None:
    # Ten pruned trials far better at every step they reached: only the completed ones count.
    assert not _pruned(_study(study, [1.0, 1.1, 1.2, 1.3], pruned=[0.1] * 10), _curve(1.19, 2000))


def test_decisions_come_at_2000_updates_then_every_1000(study: StudyConfig) -> None:
    completed = [1.0, 1.1, 1.2, 1.3]
    assert not _pruned(_study(study, completed), _curve(9.0, 1500))  # within the warm-up
    assert _pruned(_study(study, completed), _curve(9.0, 3000))
    # At 2500 no decision is due: the trial reported at 2000 already, where one was.
    assert not _pruned(_study(study, completed), _curve(9.0, 2500))


def test_the_trials_best_value_so_far_is_judged_not_its_last(study: StudyConfig) -> None:
    completed = [1.0, 1.1, 1.2, 1.3]
    noisy = {**_curve(1.15, 1500), 2000: 5.0}  # one bad evaluation at the decision step
    assert not _pruned(_study(study, completed), noisy)
