"""Tests of hpo.config: studies.yaml -> typed config, and the wording of every refusal."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.config import (
    CategoricalParam,
    FloatParam,
    HyperbandPrunerConfig,
    IntParam,
    LocalCompute,
    LocalVolume,
    MedianPrunerConfig,
    RunPodCompute,
    RunPodVolume,
    StudyConfig,
    TPESamplerConfig,
    load_studies,
    load_study,
)
from hpo.errors import ConfigError

LOCAL: dict[str, Any] = {
    "objective": "digits_mlp",
    "direction": "minimize",
    "metric": "val_loss",
    "search_space": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 0.5, "log": True},
        "hidden": {"type": "int", "low": 16, "high": 128, "step": 16},
        "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    },
    "sampler": {"type": "tpe", "seed": 0, "n_startup_trials": 8, "constant_liar": True, "multivariate": False},
    "pruner": {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 3, "interval_steps": 1, "n_min_trials": 1},
    "fidelity": {"max_step": 30, "eval_interval": 1, "step_unit": "epoch"},
    "compute": {"backend": "local"},
    "budget": {"trials": 24, "concurrency": 3, "max_attempts": 3},
    "volume": {"path": "storage"},
}

RUNPOD: dict[str, Any] = {
    "objective": "f5_tts",
    "search_space": {"lr": {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True}},
    "pruner": {"type": "hyperband", "min_resource": 2},
    "fidelity": {"max_step": 40, "eval_interval": 2, "step_unit": "update"},
    "compute": {
        "backend": "runpod",
        "image": "ghcr.io/me/hpo-trial:1.0",
        "gpu_types": ["NVIDIA RTX A5000", "NVIDIA RTX A4000"],
        "cloud": "SECURE",
        "spot": "prefer",
        "gpu_count": 1,
        "data_centers": ["EU-RO-1"],
        "cuda_versions": [12.4, "12.5"],
        "container_disk_gb": 60,
        "ports": ["8888/http", "22/tcp"],
    },
    "budget": {"trials": 40, "concurrency": 4, "usd": 25.0, "gpu_hours": 100},
    "volume": {"id": "a1b2c3d4e5", "data_center": "EU-RO-1"},
}

DELETE = object()


def edit(study: dict[str, Any], *changes: tuple[str, Any]) -> dict[str, Any]:
    """Copy ``study`` with each ``(dotted.key, value)`` set, or removed when the value is DELETE."""
    study = copy.deepcopy(study)
    for key, value in changes:
        *parents, last = key.split(".")
        node = study
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return study


def text(study: dict[str, Any], name: str = "demo", **top: Any) -> str:
    """studies.yaml holding one study (plus any other top-level keys)."""
    return yaml.safe_dump({**top, "studies": {name: study}}, sort_keys=False)


def at(key: str, study: str = "demo") -> str:
    """The start of a message about ``key`` of ``study`` in studies.yaml."""
    return f"studies.yaml: study '{study}': key '{key}': "


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write studies.yaml in a fresh working directory and return its name as a user types it."""
    monkeypatch.chdir(tmp_path)

    def _write(content: str, name: str = "studies.yaml") -> str:
        (tmp_path / name).write_text(content, encoding="utf-8")
        return name

    return _write


# --------------------------------------------------------------------------- refusals

BAD: list[Any] = [
    # typos in keys, at several depths
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.lgo", True))),
        [at("search_space.lr.lgo"), "unknown key; did you mean 'log'?"],
        id="typo-param-key",
    ),
    pytest.param(
        text(edit(LOCAL, ("budget.trails", 24), ("budget.trials", DELETE))),
        [at("budget.trails"), "unknown key; did you mean 'trials'?"],
        id="typo-budget-key-before-missing",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_spaec", LOCAL["search_space"]), ("search_space", DELETE))),
        [at("search_spaec"), "did you mean 'search_space'?"],
        id="typo-study-key",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.gpu_type", ["NVIDIA L4"])), name="f5-lr"),
        [at("compute.gpu_type", "f5-lr"), "did you mean 'gpu_types'?"],
        id="typo-compute-key",
    ),
    pytest.param(
        text(edit(LOCAL, ("pruner.n_warmup_step", 3))),
        [at("pruner.n_warmup_step"), "did you mean 'n_warmup_steps'?"],
        id="typo-pruner-key",
    ),
    pytest.param(
        text(edit(RUNPOD, ("volume.mount", "/data")), name="f5-lr"),
        [at("volume.mount", "f5-lr"), "did you mean 'mount_path'?"],
        id="typo-volume-key",
    ),
    pytest.param(
        text(edit(LOCAL, ("pruner.percentile", 25))),
        [at("pruner.percentile"), "unknown key; valid keys: n_startup_trials"],
        id="key-of-another-pruner-lists-valid-keys",
    ),
    pytest.param(
        text(edit(LOCAL, ("name", "other"))),
        [at("name"), "unknown key; a study's name is its key under 'studies'"],
        id="study-sets-own-name",
    ),
    # unknown types and tags
    pytest.param(
        text(edit(LOCAL, ("pruner.type", "medain"))),
        [at("pruner.type"), "unknown pruner 'medain'; did you mean 'median'?"],
        id="unknown-pruner-typo",
    ),
    pytest.param(
        text(edit(LOCAL, ("pruner", {"type": "threshold"}))),
        [at("pruner.type"), "unknown pruner 'threshold'; choose from median, percentile, successive_halving"],
        id="unknown-pruner-listed",
    ),
    pytest.param(
        text(edit(LOCAL, ("sampler", {"type": "tpee"}))),
        [at("sampler.type"), "unknown sampler 'tpee'; did you mean 'tpe'?"],
        id="unknown-sampler",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.type", "flaot"))),
        [at("search_space.lr.type"), "unknown parameter type 'flaot'; did you mean 'float'?"],
        id="unknown-param-type",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.type", "loguniform"))),
        [at("search_space.lr.type"), "use type: float with log: true"],
        id="optuna2-param-type",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.type", DELETE))),
        [at("search_space.lr.type"), "required key missing"],
        id="param-type-missing",
    ),
    pytest.param(
        text(edit(LOCAL, ("compute.backend", "runpd"))),
        [at("compute.backend"), "unknown backend 'runpd'; did you mean 'runpod'?"],
        id="unknown-backend",
    ),
    # bad values
    pytest.param(
        text(edit(LOCAL, ("budget.concurrency", 0))),
        [at("budget.concurrency") + "must be an integer from 1 to 1000 (got 0)"],
        id="concurrency-zero",
    ),
    pytest.param(
        text(edit(LOCAL, ("pruner.n_warmup_steps", -1))),
        [at("pruner.n_warmup_steps") + "must be an integer from 0 to 1000000000 (got -1)"],
        id="negative-warmup",
    ),
    pytest.param(
        text(edit(LOCAL, ("budget.trials", "24"))),
        [at("budget.trials") + "must be an integer from 1 to 1000000 (got '24')"],
        id="trials-as-string",
    ),
    pytest.param(
        text(edit(LOCAL, ("budget.usd", -5))),
        [at("budget.usd") + "must be a number > 0 and <= 10000000 (got -5)"],
        id="negative-usd",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.low", 1.0), ("search_space.lr.high", 0.5))),
        [at("search_space.lr.low") + "must be < high (got low=1.0, high=0.5)"],
        id="float-low-not-below-high",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.hidden.low", 256))),
        [at("search_space.hidden.low") + "must be <= high (got low=256, high=128)"],
        id="int-low-above-high",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.low", 0))),
        [at("search_space.lr.low") + "must be > 0 when log is true (got 0.0)"],
        id="log-with-zero-low",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.lr.step", 0.1))),
        [at("search_space.lr.step"), "cannot be combined with log: true"],
        id="float-step-with-log",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.hidden.log", True))),
        [at("search_space.hidden.step") + "must be 1 when log is true (got 16)"],
        id="int-log-with-step",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.hidden.step", 48))),
        [at("search_space.hidden.step"), "must divide high - low (got step=48, high - low=112)"],
        id="int-step-not-dividing",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.activation.choices", []))),
        [at("search_space.activation.choices"), "at least 1 choice"],
        id="empty-choices",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.activation.choices", ["relu", "tanh", "relu"]))),
        [at("search_space.activation.choices[2]"), "duplicate choice 'relu'"],
        id="duplicate-choices",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space.activation.choices", [1, True]))),
        [at("search_space.activation.choices[1]"), "duplicate choice true (equal to item [0]: 1)"],
        id="choices-equal-for-optuna",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space", {}))),
        [at("search_space"), "at least one parameter"],
        id="empty-search-space",
    ),
    pytest.param(
        text(edit(LOCAL, ("objective", "digits-mlp"))),
        [at("objective"), "Python identifier", "did you mean 'digits_mlp'?"],
        id="objective-not-identifier",
    ),
    pytest.param(
        text(edit(LOCAL, ("direction", "minimise"))),
        [at("direction"), "(got 'minimise'); did you mean 'minimize'?"],
        id="direction-typo",
    ),
    pytest.param(
        text(edit(LOCAL, ("pruner", {"type": "percentile", "percentile": 120}))),
        [at("pruner.percentile") + "must be a number from 0 to 100 (got 120)"],
        id="percentile-out-of-range",
    ),
    pytest.param(
        text(edit(LOCAL, ("pruner", {"type": "hyperband", "min_resource": 5, "max_resource": 3}))),
        [at("pruner.max_resource"), "must be >= min_resource"],
        id="hyperband-max-below-min",
    ),
    pytest.param(
        text(edit(LOCAL, ("fidelity.eval_interval", 40))),
        [at("fidelity.eval_interval") + "must be <= max_step (got eval_interval=40, max_step=30)"],
        id="eval-interval-above-max-step",
    ),
    pytest.param(
        text(edit(LOCAL, ("storage", "redis://localhost/0"))),
        [at("storage"), "must be a database URL", "(got 'redis://localhost/0')"],
        id="bad-storage-url",
    ),
    pytest.param(
        text(edit(LOCAL, ("storage", "postgres://me:hunter2@db/optuna"))),
        [at("storage"), "me:***@db", "write postgresql://"],
        id="storage-url-password-redacted",
    ),
    pytest.param(
        text(edit(LOCAL, ("poll_interval", 0))),
        [at("poll_interval") + "must be a number > 0 and <= 86400 (got 0)"],
        id="zero-poll-interval",
    ),
    # missing keys
    pytest.param(
        text(edit(LOCAL, ("budget.trials", DELETE))),
        [at("budget.trials") + "required key missing"],
        id="missing-trials",
    ),
    pytest.param(
        text(edit(LOCAL, ("search_space", DELETE))),
        [at("search_space") + "required key missing, and objectives/digits_mlp.py does not exist: "
         "declare the parameters here, or define search_space(trial) there"],
        id="missing-search-space",
    ),
    pytest.param(
        text(edit(LOCAL, ("objective", DELETE))),
        [at("objective") + "required key missing"],
        id="missing-objective",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.image", DELETE)), name="f5-lr"),
        [at("compute.image", "f5-lr") + "required key missing"],
        id="missing-image",
    ),
    # RunPod
    pytest.param(
        text(edit(RUNPOD, ("compute.gpu_types", ["NVIDIA RTX A4000", "RTX A5000"])), name="f5-lr"),
        [at("compute.gpu_types[1]", "f5-lr") + "unknown GPU type 'RTX A5000'; did you mean 'NVIDIA RTX A5000'?"],
        id="unknown-gpu-type",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.gpu_types", ["rtx 4090"])), name="f5-lr"),
        [at("compute.gpu_types[0]", "f5-lr"), "did you mean 'NVIDIA GeForce RTX 4090'?"],
        id="gpu-type-tail-any-case",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.gpu_types", ["NVIDIA L4", "NVIDIA L4"])), name="f5-lr"),
        [at("compute.gpu_types[1]", "f5-lr"), "duplicate GPU type 'NVIDIA L4'"],
        id="duplicate-gpu-type",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.data_centers", ["eu-ro-1"])), name="f5-lr"),
        [at("compute.data_centers[0]", "f5-lr"), "uppercase: use 'EU-RO-1'"],
        id="lowercase-data-center",
    ),
    pytest.param(
        text(edit(RUNPOD, ("volume.data_center", "EU-RO-2")), name="f5-lr"),
        [at("volume.data_center", "f5-lr"), "unknown data center 'EU-RO-2'; did you mean 'EU-RO-1'?"],
        id="unknown-volume-data-center",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.cloud", "COMMUNITY")), name="f5-lr"),
        [at("compute.cloud", "f5-lr"), "must be SECURE (got 'COMMUNITY')", "Secure Cloud"],
        id="community-cloud",
    ),
    pytest.param(
        text(edit(RUNPOD, ("volume", {"path": "storage"})), name="f5-lr"),
        [at("volume", "f5-lr"), "runpod compute needs a RunPod network volume"],
        id="runpod-with-local-volume",
    ),
    pytest.param(
        text(edit(RUNPOD, ("volume", DELETE)), name="f5-lr"),
        [at("volume", "f5-lr"), "required key missing: runpod compute needs a RunPod network volume"],
        id="runpod-without-volume",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.data_centers", ["US-KS-2"])), name="f5-lr"),
        [at("volume.data_center", "f5-lr"), "compute.data_centers (US-KS-2) disagrees with volume.data_center ('EU-RO-1')"],
        id="volume-outside-data-centers",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.cuda_versions", [12.4, "10.2"])), name="f5-lr"),
        [at("compute.cuda_versions[1]", "f5-lr"), "unknown CUDA version '10.2'; choose from 13.0"],
        id="unknown-cuda-version",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.gpu_count", 9)), name="f5-lr"),
        [at("compute.gpu_count", "f5-lr") + "must be an integer from 1 to 8 (got 9)"],
        id="too-many-gpus",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.spot", "prefered")), name="f5-lr"),
        [at("compute.spot", "f5-lr"), "did you mean 'prefer'?"],
        id="spot-typo",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.ports", ["8888/http", 22])), name="f5-lr"),
        [at("compute.ports[1]", "f5-lr"), "like '8888/http' or '22/tcp' (got 22)"],
        id="port-without-protocol",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.image", "my image")), name="f5-lr"),
        [at("compute.image", "f5-lr"), "without spaces"],
        id="image-with-space",
    ),
    pytest.param(
        text(edit(RUNPOD, ("volume.path", "storage")), name="f5-lr"),
        [at("volume", "f5-lr"), "either path", "not both"],
        id="volume-path-and-id",
    ),
    # defaults
    pytest.param(
        text(
            edit(RUNPOD, ("compute", {"backend": "runpod", "image": "x"})),
            name="f5-lr",
            defaults={"compute": {"gpu_types": ["RTX 4090x"]}},
        ),
        [at("compute.gpu_types[0]", "f5-lr"), "did you mean 'NVIDIA GeForce RTX 4090'? (set in 'defaults')"],
        id="error-in-defaults",
    ),
    # the file itself
    pytest.param(
        "studies:\n  demo:\n    objective: x\n   search_space: {}\n",
        ["studies.yaml: line 4, column 4: invalid YAML: "],
        id="yaml-syntax",
    ),
    pytest.param(
        "studies:\n  demo:\n    objective: a\n    objective: b\n",
        ["studies.yaml: line 4, column 5: invalid YAML: duplicate key 'objective'"],
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "- demo\n- f5-lr\n",
        ["studies.yaml: the top level must be a mapping with a 'studies' key (got a list)"],
        id="top-level-list",
    ),
    pytest.param("", ["studies.yaml: the file is empty"], id="empty-file"),
    pytest.param(
        "studis:\n  demo: {}\n",
        ["studies.yaml: key 'studis': unknown top-level key; did you mean 'studies'?"],
        id="top-level-typo",
    ),
    pytest.param(
        "studies: [demo]\n",
        ["studies.yaml: key 'studies': must be a mapping of study name to study (got a list)"],
        id="studies-not-mapping",
    ),
    pytest.param(
        "studies:\n  demo:\n",
        ["studies.yaml: study 'demo': must be a mapping of keys (got null)"],
        id="study-not-mapping",
    ),
    pytest.param(
        text(LOCAL, name="demo/1"),
        ["studies.yaml: study 'demo/1': invalid study name"],
        id="study-name-with-slash",
    ),
]


@pytest.mark.parametrize(("content", "expected"), BAD)
def test_malformed_file_is_refused_with_a_precise_message(
    write: Any, content: str, expected: list[str]
) -> None:
    path = write(content)
    with pytest.raises(ConfigError) as raised:
        load_studies(path)
    message = str(raised.value)
    assert message.startswith(expected[0]), message
    for fragment in expected[1:]:
        assert fragment in message, message
    assert "\n" not in message
    assert raised.value.exit_code == 2


def test_unknown_study_suggests_and_lists_known(write: Any) -> None:
    path = write(yaml.safe_dump({"studies": {"demo": LOCAL, "f5-lr": RUNPOD}}, sort_keys=False))
    with pytest.raises(ConfigError) as raised:
        load_study(path, "dmeo")
    assert str(raised.value) == (
        "studies.yaml: unknown study 'dmeo'; did you mean 'demo'? known studies: demo, f5-lr"
    )
    with pytest.raises(ConfigError, match=r"unknown study 'zzz'; known studies: demo, f5-lr$"):
        load_study(path, "zzz")


def test_missing_file(write: Any) -> None:
    with pytest.raises(ConfigError, match=r"^nope\.yaml: file not found$"):
        load_studies("nope.yaml")


def test_message_names_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "studies.yaml"
    path.parent.mkdir()
    path.write_text(text(edit(LOCAL, ("budget.trials", 0))), encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_study(str(path), "demo")
    assert str(raised.value).startswith(f"{path}: study 'demo': key 'budget.trials': ")


def test_load_study_ignores_other_broken_studies(write: Any) -> None:
    broken = edit(LOCAL, ("pruner.type", "medain"))
    path = write(yaml.safe_dump({"studies": {"demo": LOCAL, "broken": broken}}, sort_keys=False))
    assert load_study(path, "demo").name == "demo"
    with pytest.raises(ConfigError, match="study 'broken': key 'pruner.type'"):
        load_studies(path)


# --------------------------------------------------------------------------- valid files


def test_full_local_study(write: Any, tmp_path: Path) -> None:
    study = load_study(write(text(LOCAL)), "demo")

    assert study.name == "demo"
    assert study.source == tmp_path / "studies.yaml"
    assert (study.objective, study.direction, study.metric) == ("digits_mlp", "minimize", "val_loss")
    lr, hidden, activation = study.search_space.values()
    assert lr == FloatParam(low=1e-4, high=0.5, log=True)
    assert hidden == IntParam(low=16, high=128, step=16)
    assert activation == CategoricalParam(choices=("relu", "tanh"))
    assert study.sampler == TPESamplerConfig(seed=0, n_startup_trials=8)
    assert study.pruner == MedianPrunerConfig(n_startup_trials=4, n_warmup_steps=3)
    assert (study.fidelity.max_step, study.fidelity.eval_interval, study.fidelity.step_unit) == (30, 1, "epoch")
    assert isinstance(study.compute, LocalCompute)
    assert (study.budget.trials, study.budget.concurrency, study.budget.max_attempts) == (24, 3, 3)
    assert study.budget.usd is None and study.budget.gpu_hours is None
    assert study.volume == LocalVolume(path=tmp_path / "storage")
    assert study.storage is None
    assert study.poll_interval == 1.0


def test_minimal_study_gets_the_documented_defaults(write: Any, tmp_path: Path) -> None:
    minimal = {
        "objective": "digits_mlp",
        "search_space": {"x": {"type": "float", "low": -1, "high": 1}},
        "fidelity": {"max_step": 5},
        "budget": {"trials": 2},
    }
    study = load_study(write(text(minimal)), "demo")

    assert study.direction == "minimize" and study.metric == "loss"
    assert study.search_space["x"] == FloatParam(low=-1.0, high=1.0, log=False, step=None)
    assert study.sampler == TPESamplerConfig(seed=None, n_startup_trials=10, constant_liar=True, multivariate=False)
    assert study.pruner == MedianPrunerConfig(n_startup_trials=5, n_warmup_steps=0, interval_steps=1, n_min_trials=1)
    assert (study.fidelity.eval_interval, study.fidelity.step_unit) == (1, "epoch")
    assert (study.budget.concurrency, study.budget.max_attempts) == (1, 3)
    assert study.compute == LocalCompute()
    assert study.volume == LocalVolume(path=tmp_path / "storage")
    assert study.storage is None and study.poll_interval == 1.0


def test_a_one_shot_study_needs_no_fidelity_and_names_its_metric_by_direction(write: Any) -> None:
    minimal = {
        "objective": "digits_mlp",
        "direction": "maximize",
        "search_space": {"x": {"type": "float", "low": -1, "high": 1}},
        "pruner": {"type": "hyperband"},
        "budget": {"trials": 2},
    }
    study = load_study(write(text(minimal)), "demo")
    assert study.metric == "score" and study.space_source == "studies.yaml"
    assert (study.fidelity.max_step, study.fidelity.eval_interval, study.fidelity.step_unit) == (None, 1, "epoch")
    assert study.build_pruner()._max_resource == "auto"  # Optuna's own estimate, with no max_step to take
    study = load_study(write(text(edit(minimal, ("fidelity", {"step_unit": "round"})))), "demo")
    assert (study.fidelity.max_step, study.fidelity.step_unit) == (None, "round")


def test_full_runpod_study(write: Any) -> None:
    study = load_study(write(text(RUNPOD, name="f5-lr")), "f5-lr")

    compute = study.compute
    assert isinstance(compute, RunPodCompute)
    assert compute.image == "ghcr.io/me/hpo-trial:1.0"
    assert compute.gpu_types == ("NVIDIA RTX A5000", "NVIDIA RTX A4000")
    assert (compute.cloud, compute.spot, compute.gpu_count) == ("SECURE", "prefer", 1)
    assert compute.data_centers == ("EU-RO-1",)
    assert compute.cuda_versions == ("12.4", "12.5")  # a YAML number became a version string
    assert (compute.container_disk_gb, compute.ports) == (60, ("8888/http", "22/tcp"))
    volume = study.volume
    assert isinstance(volume, RunPodVolume)
    assert (volume.id, volume.data_center, volume.mount_path, volume.endpoint) == (
        "a1b2c3d4e5",
        "EU-RO-1",
        "/workspace",
        None,
    )
    assert volume.s3_endpoint_url == "https://s3api-eu-ro-1.runpod.io/"
    assert study.poll_interval == 15.0  # RunPod's API is polled less often
    assert (study.budget.usd, study.budget.gpu_hours) == (25.0, 100.0)
    assert study.pruner == HyperbandPrunerConfig(min_resource=2)


def test_runpod_defaults_and_explicit_poll_interval(write: Any) -> None:
    compute = {"backend": "runpod", "image": "img", "gpu_types": ["NVIDIA L4"]}
    study = load_study(
        write(text(edit(RUNPOD, ("compute", compute), ("poll_interval", 5)), name="f5-lr")), "f5-lr"
    )
    assert study.compute == RunPodCompute(image="img", gpu_types=("NVIDIA L4",))
    assert study.compute.spot is True and study.compute.container_disk_gb == 50
    assert study.compute.data_centers is None and study.compute.ports == ()
    assert study.poll_interval == 5.0


def test_local_compute_may_use_a_runpod_volume(write: Any) -> None:
    study = load_study(write(text(edit(LOCAL, ("volume", RUNPOD["volume"])))), "demo")
    assert isinstance(study.compute, LocalCompute) and isinstance(study.volume, RunPodVolume)
    assert study.poll_interval == 1.0


def test_distributions(write: Any) -> None:
    study = load_study(write(text(LOCAL)), "demo")
    assert study.distributions() == {
        "lr": FloatDistribution(1e-4, 0.5, log=True),
        "hidden": IntDistribution(16, 128, step=16),
        "activation": CategoricalDistribution(["relu", "tanh"]),
    }


def test_params_dump_to_json_for_the_trial_spec(write: Any) -> None:
    study = load_study(write(text(LOCAL)), "demo")
    dumped = json.loads(json.dumps({name: p.model_dump() for name, p in study.search_space.items()}))
    assert dumped["lr"] == {"type": "float", "low": 1e-4, "high": 0.5, "log": True, "step": None}
    assert dumped["activation"] == {"type": "categorical", "choices": ["relu", "tanh"]}


def test_models_are_frozen(write: Any) -> None:
    study = load_study(write(text(LOCAL)), "demo")
    with pytest.raises(Exception, match="frozen"):
        study.budget.trials = 5  # type: ignore[misc]


def test_sampler_build(write: Any) -> None:
    tpe = load_study(write(text(LOCAL)), "demo").sampler.build()
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert (tpe._n_startup_trials, tpe._constant_liar, tpe._multivariate) == (8, True, False)

    rand = load_study(write(text(edit(LOCAL, ("sampler", "random")))), "demo").sampler.build()
    assert isinstance(rand, optuna.samplers.RandomSampler)


@pytest.mark.parametrize(
    ("pruner", "cls", "attributes"),
    [
        (
            {"type": "median", "n_startup_trials": 4, "n_warmup_steps": 3, "interval_steps": 2, "n_min_trials": 2},
            optuna.pruners.MedianPruner,
            {"_n_startup_trials": 4, "_n_warmup_steps": 3, "_interval_steps": 2, "_n_min_trials": 2},
        ),
        (
            {"type": "percentile", "percentile": 25, "n_warmup_steps": 1},
            optuna.pruners.PercentilePruner,
            {"_percentile": 25.0, "_n_warmup_steps": 1, "_n_startup_trials": 5},
        ),
        (
            {"type": "successive_halving", "reduction_factor": 3, "min_early_stopping_rate": 1},
            optuna.pruners.SuccessiveHalvingPruner,
            {"_min_resource": None, "_reduction_factor": 3, "_min_early_stopping_rate": 1},
        ),
        (
            {"type": "hyperband", "min_resource": 2},
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 2, "_max_resource": 30, "_reduction_factor": 3},  # auto -> max_step
        ),
        (
            {"type": "hyperband", "max_resource": 20, "bootstrap_count": 1},
            optuna.pruners.HyperbandPruner,
            {"_max_resource": 20, "_bootstrap_count": 1},
        ),
        (
            {"type": "wilcoxon", "p_threshold": 0.05, "n_startup_steps": 3},
            optuna.pruners.WilcoxonPruner,
            {"_p_threshold": 0.05, "_n_startup_steps": 3},
        ),
        (
            {"type": "patient", "patience": 3, "min_delta": 0.01, "wrapped": {"type": "hyperband"}},
            optuna.pruners.PatientPruner,
            {"_patience": 3, "_min_delta": 0.01},
        ),
        ({"type": "patient", "patience": 0}, optuna.pruners.PatientPruner, {"_wrapped_pruner": None}),
        ("none", optuna.pruners.NopPruner, {}),
    ],
    ids=["median", "percentile", "successive_halving", "hyperband-auto", "hyperband", "wilcoxon", "patient",
         "patient-alone", "none"],
)
def test_pruner_build(write: Any, pruner: Any, cls: type, attributes: dict[str, Any]) -> None:
    study = load_study(write(text(edit(LOCAL, ("pruner", pruner)))), "demo")
    built = study.build_pruner()
    assert type(built) is cls
    for name, value in attributes.items():
        assert getattr(built, name) == value, name


def test_patient_wraps_a_pruner_built_with_the_study_max_step(write: Any) -> None:
    pruner = {"type": "patient", "patience": 2, "wrapped": {"type": "hyperband"}}
    built = load_study(write(text(edit(LOCAL, ("pruner", pruner)))), "demo").build_pruner()
    assert type(built._wrapped_pruner) is optuna.pruners.HyperbandPruner
    assert built._wrapped_pruner._max_resource == 30  # the study's fidelity.max_step


def test_patient_cannot_wrap_a_patient_pruner(write: Any) -> None:
    pruner = {"type": "patient", "patience": 2, "wrapped": {"type": "patient", "patience": 1}}
    with pytest.raises(ConfigError, match=r"key 'pruner.wrapped.type': unknown pruner 'patient'"):
        load_study(write(text(edit(LOCAL, ("pruner", pruner)))), "demo")


def test_hyperband_without_max_step_keeps_auto() -> None:
    assert HyperbandPrunerConfig().build()._max_resource == "auto"


def test_config_drives_an_optuna_study(write: Any) -> None:
    config = load_study(write(text(LOCAL)), "demo")
    study = optuna.create_study(
        direction=config.direction, sampler=config.sampler.build(), pruner=config.build_pruner()
    )
    trial = study.ask(config.distributions())
    assert set(trial.params) == {"lr", "hidden", "activation"}
    assert 1e-4 <= trial.params["lr"] <= 0.5 and trial.params["hidden"] % 16 == 0


def test_defaults_are_merged_under_every_study(write: Any) -> None:
    shared = {
        "compute": {"backend": "runpod", "image": "img:1", "gpu_types": ["NVIDIA RTX A5000"], "spot": False},
        "volume": {"id": "vol1234567", "data_center": "EU-RO-1"},
        "budget": {"concurrency": 2},
        "fidelity": {"max_step": 10},
    }
    one = {
        "objective": "a",
        "search_space": {"x": {"type": "int", "low": 1, "high": 3}},
        "budget": {"trials": 5},
    }
    two = edit(one, ("compute", {"gpu_types": ["NVIDIA L4"]}), ("budget", {"trials": 7, "concurrency": 1}))
    path = write(yaml.safe_dump({"defaults": shared, "studies": {"one": one, "two": two}}, sort_keys=False))

    studies = load_studies(path)
    assert studies.path == Path("studies.yaml")
    assert list(studies.studies) == ["one", "two"]
    first, second = studies.studies["one"], studies.get("two")
    assert isinstance(first.compute, RunPodCompute) and isinstance(second.compute, RunPodCompute)
    assert first.compute.gpu_types == ("NVIDIA RTX A5000",)
    assert second.compute.gpu_types == ("NVIDIA L4",)  # lists are replaced, not appended
    assert second.compute.image == "img:1" and second.compute.spot is False  # mappings merge
    assert (first.budget.trials, first.budget.concurrency) == (5, 2)
    assert (second.budget.trials, second.budget.concurrency) == (7, 1)
    assert first.volume == second.volume == RunPodVolume(id="vol1234567", data_center="EU-RO-1")
    with pytest.raises(ConfigError, match="unknown study 'tow'; did you mean 'two'"):
        studies.get("tow")


def test_relative_paths_resolve_against_the_yaml_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    study = edit(LOCAL, ("volume", {"path": "../data/hpo"}), ("storage", "sqlite:///optuna.db"))
    (conf / "studies.yaml").write_text(text(study), encoding="utf-8")

    config = load_study("../conf/studies.yaml", "demo")
    assert config.volume == LocalVolume(path=tmp_path / "data" / "hpo")
    assert config.storage == f"sqlite:///{conf / 'optuna.db'}"
    assert config.source == conf / "studies.yaml"


def test_absolute_volume_path_is_kept(write: Any, tmp_path: Path) -> None:
    target = tmp_path / "abs" / "store"
    study = load_study(write(text(edit(LOCAL, ("volume", {"path": str(target)})))), "demo")
    assert study.volume == LocalVolume(path=target)


def test_yaml_anchors_share_blocks(write: Any) -> None:
    content = (
        "studies:\n"
        "  a: &base\n"
        "    objective: a\n"
        "    search_space: {x: {type: categorical, choices: [a, 2.5, yes, null]}}\n"
        "    fidelity: {max_step: 3}\n"
        "    budget: {trials: 1}\n"
        "  b:\n"
        "    <<: *base\n"
        "    objective: b\n"
    )
    studies = load_studies(write(content)).studies
    assert studies["b"].objective == "b"
    assert studies["a"].search_space["x"] == CategoricalParam(choices=("a", 2.5, True, None))


def test_direct_construction_uses_the_same_checks() -> None:
    with pytest.raises(ValueError, match="must be < high"):
        FloatParam(low=2, high=1)
    config = StudyConfig(
        name="demo",
        source=Path("/x/studies.yaml"),
        objective="o",
        search_space={"x": FloatParam(low=0, high=1)},
        fidelity={"max_step": 3},
        budget={"trials": 1},
    )
    assert config.volume == LocalVolume(path=Path.cwd() / "storage")


# --------------------------------------------------------------------------- hostile input (issue 11)


def test_show_cuts_a_huge_value_without_rendering_it_whole() -> None:
    """A billion-laughs value (9**9 strings, shared lists) renders in one short line, at once."""
    from hpo.config._messages import show

    value: Any = ["lol"] * 9
    for _ in range(9):
        value = [value] * 9
    shown = show(value)
    assert shown.endswith("...") and len(shown) <= 60
    assert show("x" * 10_000_000).endswith("...")
    assert show(10**5000) == "<an integer of about 5001 digits>"
    assert show({"a": [1, None, True]}) == "{a: [1, null, true]}"
    looped: list[Any] = []
    looped.append(looped)
    assert show(looped).endswith("...")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"b{n}: &b{n} [{', '.join([f'*b{n - 1}' if n else '*a'] * 10)}]\n" for n in range(6))
            + "studies: {}\n",
            r"^studies\.yaml: line 5, column 5: more than 100000 values once YAML aliases \(\*name\) are expanded",
            id="alias-bomb",
        ),
        pytest.param("studies: &s {demo: *s}\n", r"^studies\.yaml: line 1, column 10: an alias refers to", id="recursive"),
        pytest.param("studies: " + "[" * 40 + "]" * 40 + "\n", r"^studies\.yaml: line 1, column 41: nested deeper than 32", id="deep"),
        pytest.param("studies: [" + ", ".join(["1"] * 100_001) + "]\n", r"more than 100000 values; a studies file", id="wide"),
    ],
)
def test_documents_beyond_the_limits_are_refused_before_they_are_built(write: Any, content: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_studies(write(content))


def test_a_file_over_one_mib_is_refused_unread(write: Any) -> None:
    path = write(text(LOCAL) + "#" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match=r"^studies\.yaml: the file is 1,04\d,\d{3} bytes; a studies file may be at most 1,048,576"):
        load_studies(path)


def test_placeholders_are_refused_when_the_study_is_used_not_when_the_file_is_checked(write: Any) -> None:
    template = edit(RUNPOD, ("compute.image", "ghcr.io/<you>/runpod-hpo-trial:0.1.0"), ("volume.id", "your-volume-id"))
    path = write(yaml.safe_dump({"studies": {"demo": LOCAL, "f5-lr": template}}, sort_keys=False))
    assert load_study(path, "demo").name == "demo"
    assert set(load_studies(path).studies) == {"demo", "f5-lr"}
    with pytest.raises(ConfigError) as raised:
        load_study(path, "f5-lr")
    assert str(raised.value) == (
        "studies.yaml: study 'f5-lr': key 'compute.image': still holds the placeholder "
        "'ghcr.io/<you>/runpod-hpo-trial:0.1.0'; replace it with the trial image you built and pushed "
        "(docker/README.md)"
    )
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    "image", ["ghcr.io/me/hpo-trial:1.0", "ghcr.io/example/hpo-trial:test", "runpod-hpo/trial:0.1.0", "img:1"]
)
def test_real_looking_images_are_not_placeholders(write: Any, image: str) -> None:
    study = load_study(write(text(edit(RUNPOD, ("compute.image", image)), name="f5-lr")), "f5-lr")
    assert isinstance(study.compute, RunPodCompute) and study.compute.image == image


def test_the_shipped_studies_load_except_the_template(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent / "studies.yaml"
    assert load_study(shipped, "demo").name == "demo"
    assert load_study(shipped, "demo-pods").name == "demo-pods"
    with pytest.raises(ConfigError, match="study 'f5-lr': key 'compute.image': still holds the placeholder"):
        load_study(shipped, "f5-lr")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("poll_interval", 86400.5, "must be a number > 0 and <= 86400 (got 86400.5)"),
        ("budget.trials", 1_000_001, "must be an integer from 1 to 1000000 (got 1000001)"),
        ("budget.max_attempts", 101, "must be an integer from 1 to 100 (got 101)"),
        ("budget.gpu_hours", float("inf"), "must be a number > 0 and <= 10000000 (got inf)"),
        ("fidelity.eval_interval", 10**10, "must be an integer from 1 to 1000000000 (got 10000000000)"),
        ("sampler.n_startup_trials", 10**7, "must be an integer from 0 to 1000000 (got 10000000)"),
        ("pruner.n_warmup_steps", 10**10, "must be an integer from 0 to 1000000000 (got 10000000000)"),
    ],
)
def test_every_number_has_an_upper_bound(write: Any, key: str, value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_study(write(text(edit(LOCAL, (key, value)))), "demo")
    assert str(raised.value) == f"studies.yaml: study 'demo': key '{key}': {expected}"


def test_the_bounds_themselves_are_accepted(write: Any) -> None:
    study = load_study(
        write(text(edit(LOCAL, ("poll_interval", 86400), ("budget.trials", 1_000_000), ("budget.concurrency", 1000)))),
        "demo",
    )
    assert (study.poll_interval, study.budget.trials, study.budget.concurrency) == (86400.0, 1_000_000, 1000)


# --------------------------------------------------------------------------- issue 12: bids, registry, placement

RUNPOD_12: list[Any] = [
    pytest.param(
        text(edit(RUNPOD, ("compute.bid", "markt")), name="f5-lr"),
        [at("compute.bid", "f5-lr"), "must be market, floor or a cap in USD per GPU-hour", "did you mean 'market'?"],
        id="bid-typo",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.bid", 0)), name="f5-lr"),
        [at("compute.bid", "f5-lr"), "above 0"],
        id="bid-zero",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.bid", True)), name="f5-lr"),
        [at("compute.bid", "f5-lr"), "must be market, floor or a cap"],
        id="bid-bool",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.registry_auth", "my cred")), name="f5-lr"),
        [at("compute.registry_auth", "f5-lr"), "without spaces"],
        id="registry-auth-with-space",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.data_centers", ["US-KS-2", "US-TX-3"])), name="f5-lr"),
        [at("volume.data_center", "f5-lr"), "compute.data_centers", "its own data center"],
        id="data-centers-exclude-the-volume",
    ),
    pytest.param(
        text(edit(RUNPOD, ("compute.data_centers", ["EU-RO-1", "US-TX-3"])), name="f5-lr"),
        [at("volume.data_center", "f5-lr"), "disagrees with volume.data_center", "set it to [EU-RO-1]"],
        id="data-centers-beyond-the-volume",
    ),
]


@pytest.mark.parametrize(("content", "expected"), RUNPOD_12)
def test_bid_registry_and_placement_are_checked(write: Any, content: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_study(write(content), "f5-lr")
    message = str(caught.value)
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(("given", "read"), [("market", "market"), ("floor", "floor"), (0.35, 0.35), (1, 1.0)])
def test_bid_policies(write: Any, given: Any, read: Any) -> None:
    study = load_study(write(text(edit(RUNPOD, ("compute.bid", given)), name="f5-lr")), "f5-lr")
    assert isinstance(study.compute, RunPodCompute) and study.compute.bid == read


def test_bid_defaults_to_market_and_registry_auth_to_none(write: Any) -> None:
    study = load_study(write(text(RUNPOD, name="f5-lr")), "f5-lr")
    assert isinstance(study.compute, RunPodCompute)
    assert study.compute.bid == "market" and study.compute.registry_auth is None
    named = load_study(write(text(edit(RUNPOD, ("compute.registry_auth", "ghcr-private")), name="f5-lr")), "f5-lr")
    assert isinstance(named.compute, RunPodCompute) and named.compute.registry_auth == "ghcr-private"
