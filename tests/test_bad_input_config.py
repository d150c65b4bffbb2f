"""Hostile input to studies.yaml and ``hpo report --out``: one line, the right exit code, at once.

Each case runs the ``hpo`` command line on a studies.yaml built for it, and
asserts what issue 11 asks of every bad input: exactly one line on stderr
naming the file, the study and the key (or the path), exit code 2 for a bad
studies.yaml and 1 for a runtime error, no traceback, and no hang (a case has
:data:`TIMEOUT` seconds: a hang fails it, a slow machine does not). The cases
are a table, so a new attack is one more row. The table runs in the test's own
process (``hpo.cli.main``, which ``python -m hpo`` calls, its log records
counted as the stderr lines they would be: ``studyfiles.hpo_in_process``); a
few rows also run as ``python -m hpo`` subprocesses, the real entry point.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from studyfiles import hpo_in_process, make_workspace, study_config, study_volume

from hpo.journal import open_storage

TIMEOUT = 120
"""Seconds a command may take before the case counts as a hang (the answer takes about one; a loaded machine, more)."""

LOCAL: dict[str, Any] = {
    "objective": "digits_mlp",
    "search_space": {
        "lr": {"type": "float", "low": 1.0e-4, "high": 0.5, "log": True},
        "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    },
    "fidelity": {"max_step": 5},
    "budget": {"trials": 4},
    "volume": {"path": "storage"},
}

RUNPOD: dict[str, Any] = {
    **LOCAL,
    "compute": {"backend": "runpod", "image": "ghcr.io/me/hpo-trial:1.0", "gpu_types": ["NVIDIA RTX A5000"]},
    "volume": {"id": "vol0123456", "data_center": "EU-RO-1"},
}


def edit(study: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``study`` with the dotted ``key`` set to ``value``."""
    study = copy.deepcopy(study)
    *parents, last = key.split(".")
    node = study
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return study


def dump(study: dict[str, Any], name: str = "demo", defaults: dict[str, Any] | None = None) -> str:
    """studies.yaml holding ``study`` as ``name`` (and ``defaults`` if given)."""
    document: dict[str, Any] = {"studies": {name: study}}
    if defaults is not None:
        document = {"defaults": defaults, **document}
    return yaml.safe_dump(document, sort_keys=False)


HEAD = "studies:\n  demo:\n    objective: digits_mlp\n    fidelity: {max_step: 5}\n    budget: {trials: 4}\n"
"""A study's first lines, for cases written as raw YAML (what safe_dump cannot write)."""


@dataclass(frozen=True)
class Case:
    """One bad input: the studies file, the command, and what the answer must say."""

    id: str
    studies: str | Callable[[Path], str]
    """The file's text, or a function of the case's folder returning it."""
    expected: tuple[str, ...]
    """Fragments the one stderr line must hold."""
    code: int = 2
    argv: tuple[str, ...] = ("status", "--study", "demo")
    """The command; ``--studies FILE`` is appended."""
    absent: tuple[str, ...] = field(default=())
    """Fragments that must not appear (a secret, a giant value)."""


def alias_bomb(where: str, levels: int = 10) -> str:
    """A studies.yaml whose ``where`` (``choices`` or ``metric``) is a "billion laughs": 9 ** levels strings."""
    anchors = "".join(
        f"x{level}: &l{level} [{', '.join(['lol' if level == 0 else f'*l{level - 1}'] * 9)}]\n"
        for level in range(levels)
    )
    if where == "choices":
        tail = f"    search_space: {{act: {{type: categorical, choices: *l{levels - 1}}}}}\n"
    else:
        tail = f"    search_space: {{x: {{type: float, low: 0, high: 1}}}}\n    metric: *l{levels - 1}\n"
    # The anchors sit in another study, which load_study never validates: parsing alone must stop them.
    return "studies:\n  anchors:\n" + "".join(f"    {line}" for line in anchors.splitlines(True)) + (
        "  demo:\n    objective: digits_mlp\n    fidelity: {max_step: 5}\n    budget: {trials: 4}\n" + tail
    )


def deep_aliases(levels: int = 40) -> str:
    """Nesting built from aliases: each anchor is a list holding the previous one (no level is deep alone)."""
    lines = "".join(f"    a{n}: &a{n} [{'*a' + str(n - 1) if n else '1'}]\n" for n in range(levels))
    return "studies:\n  anchors:\n" + lines + HEAD.removeprefix("studies:\n") + (
        f"    search_space: {{act: {{type: categorical, choices: *a{levels - 1}}}}}\n"
    )


CONFIG_CASES = [
    # -- YAML built to exhaust the validator ----------------------------------------------------------
    Case("alias-bomb-in-choices", alias_bomb("choices"), ("studies.yaml: line ", "aliases", "expanded")),
    Case("alias-bomb-in-metric", alias_bomb("metric"), ("studies.yaml: line ", "aliases", "expanded")),
    Case("alias-bomb-under-the-limit", alias_bomb("metric", levels=4),  # 6561 strings: parsed, then refused
         ("study 'demo': key 'metric': must be a non-empty string (got [[[['lol', 'lol'", "...)")),
    Case("recursive-alias", HEAD + "    search_space: &s {x: *s}\n", ("studies.yaml: line 6", "recursive alias")),
    Case("deep-flow-nesting", HEAD + "    metric: " + "[" * 5000 + "]" * 5000 + "\n",
         ("studies.yaml: line 6", "nested deeper than 32 levels")),
    Case("deep-block-nesting", HEAD + "    metric:\n" + "".join(f"{'  ' * (n + 3)}k{n}:\n" for n in range(200)),
         ("studies.yaml: line ", "nested deeper than 32 levels")),
    Case("deep-via-aliases", deep_aliases(), ("studies.yaml: line ", "nested deeper than 32 levels", "aliases")),
    Case("huge-file", lambda folder: dump(LOCAL) + "#" * (2 * 1024 * 1024) + "\n",
         ("studies.yaml: the file is 2,", "bytes", "at most 1,048,576 bytes")),
    Case("integer-of-5000-digits", HEAD.replace("{trials: 4}", "{trials: " + "9" * 5000 + "}"),
         ("studies.yaml: line 5", "an integer of 5000 characters is too large"), absent=("9999999999",)),
    Case("hex-integer-of-5000-digits", dump(LOCAL).replace("trials: 4", "trials: 0x" + "f" * 5000),
         ("studies.yaml: line ", "an integer of 5002 characters is too large"), absent=("ffffffffff",)),
    Case("sexagesimal-integer", dump(LOCAL).replace("trials: 4", "trials: 1" + ":59" * 100_000),
         ("studies.yaml: line ", "an integer of 300001 characters is too large"), absent=(":59:59:59",)),
    Case("integer-just-long-enough", dump(LOCAL).replace("trials: 4", "trials: " + "9" * 100),
         ("study 'demo': key 'budget.trials': must be an integer from 1 to 1000000 (got <an integer of 100 digits>)",)),
    Case("impossible-date", HEAD.replace("{trials: 4}", "{trials: 2024-02-30}"),
         ("studies.yaml: line 5", "invalid date '2024-02-30'")),
    # -- numbers beyond any sane study ----------------------------------------------------------------
    Case("poll-interval-1e300", dump(edit(LOCAL, "poll_interval", 1e300)),
         ("study 'demo': key 'poll_interval': must be a number > 0 and <= 86400 (got 1e+300)",)),
    Case("poll-interval-nan", dump(edit(LOCAL, "poll_interval", float("nan"))),
         ("key 'poll_interval': must be a number > 0 and <= 86400 (got nan)",)),
    Case("poll-interval-inf", dump(edit(LOCAL, "poll_interval", float("inf"))), ("key 'poll_interval'", "(got inf)")),
    Case("trials-ten-million", dump(edit(LOCAL, "budget.trials", 10**7)),
         ("key 'budget.trials': must be an integer from 1 to 1000000 (got 10000000)",)),
    Case("concurrency-huge", dump(edit(LOCAL, "budget.concurrency", 10**5)),
         ("key 'budget.concurrency': must be an integer from 1 to 1000",)),
    Case("usd-1e300", dump(edit(LOCAL, "budget.usd", 1e300)), ("key 'budget.usd': must be a number > 0 and <= 10000000",)),
    Case("max-trial-seconds-huge", dump(edit(LOCAL, "budget.max_trial_seconds", 1e12)),
         ("key 'budget.max_trial_seconds': must be a number > 0 and <= 2592000",)),
    Case("max-step-1e12", dump(edit(LOCAL, "fidelity.max_step", 10**12)),
         ("key 'fidelity.max_step': must be an integer from 1 to 1000000000",)),
    Case("float-param-low-1e300", dump(edit(LOCAL, "search_space.lr", {"type": "float", "low": -1e300, "high": 1.0})),
         ("key 'search_space.lr.low': must be a number from -1e+18 to 1e+18",)),
    Case("float-param-nan", dump(edit(LOCAL, "search_space.lr", {"type": "float", "low": 0.0, "high": float("nan")})),
         ("key 'search_space.lr.high'", "(got nan)")),
    Case("float-step-too-fine", dump(edit(LOCAL, "search_space.lr", {"type": "float", "low": 0.0, "high": 1e18, "step": 1e-300})),
         ("key 'search_space.lr.step': is too small for the range",)),
    Case("int-param-10e30", dump(edit(LOCAL, "search_space.n", {"type": "int", "low": 0, "high": 10**30})),
         ("key 'search_space.n.high': must be an integer from -9007199254740992 to 9007199254740992",)),
    Case("choice-nan", dump(edit(LOCAL, "search_space.act.choices", ["relu", float("nan")])),
         ("key 'search_space.act.choices[1]': must be a finite number (got nan)",)),
    Case("two-thousand-choices", dump(edit(LOCAL, "search_space.act.choices", list(range(2000)))),
         ("key 'search_space.act.choices': must list at most 1000 choices (got 2000 items)",)),
    Case("metric-of-10k-characters", dump(edit(LOCAL, "metric", "m" * 10_000)),
         ("key 'metric': must be at most 200 characters (got 10000:",), absent=("m" * 100,)),
    Case("reduction-factor-huge", dump(edit(LOCAL, "pruner", {"type": "hyperband", "reduction_factor": 10**6})),
         ("key 'pruner.reduction_factor': must be an integer from 2 to 1000",)),
    Case("container-disk-huge", dump(edit(RUNPOD, "compute.container_disk_gb", 10**6)),
         ("key 'compute.container_disk_gb': must be an integer from 1 to 4000",)),
    # -- placeholders left from the examples ----------------------------------------------------------
    Case("placeholder-volume-id", dump(edit(RUNPOD, "volume.id", "your-volume-id")),
         ("study 'demo': key 'volume.id': still holds the placeholder 'your-volume-id'", "network volume's id"),
         argv=("run", "--study", "demo")),
    Case("placeholder-image-angle-brackets", dump(edit(RUNPOD, "compute.image", "ghcr.io/<you>/runpod-hpo-trial:0.1.0")),
         ("key 'compute.image': still holds the placeholder 'ghcr.io/<you>/runpod-hpo-trial:0.1.0'", "docker/README.md"),
         argv=("run", "--study", "demo")),
    Case("placeholder-image-your", dump(edit(RUNPOD, "compute.image", "ghcr.io/your-github-user/trial:0.1.0")),
         ("key 'compute.image': still holds the placeholder",)),
    Case("placeholder-volume-changeme", dump(edit(RUNPOD, "volume.id", "changeme")),
         ("key 'volume.id': still holds the placeholder 'changeme'",)),
    Case("placeholder-volume-example", dump(edit(RUNPOD, "volume.id", "example-volume")),
         ("key 'volume.id': still holds the placeholder 'example-volume'",)),
    Case("placeholder-volume-uppercase", dump(edit(RUNPOD, "volume.id", "YOUR_VOLUME_ID")),
         ("key 'volume.id': still holds the placeholder 'YOUR_VOLUME_ID'",)),
    Case("placeholder-endpoint", dump(edit(RUNPOD, "volume.endpoint", "https://s3.example.com/")),
         ("key 'volume.endpoint': still holds the placeholder 'https://s3.example.com/'",)),
    Case("placeholder-storage-password", dump(edit(LOCAL, "storage", "postgresql://hpo:<password>@db/hpo")),
         ("key 'storage': still holds the placeholder 'postgresql://hpo:***@db/hpo'",), absent=("<password>",)),
    Case("placeholder-in-defaults", dump({k: v for k, v in RUNPOD.items() if k != "volume"},
                                         defaults={"volume": {"id": "<volume id>", "data_center": "EU-RO-1"}}),
         ("key 'volume.id': still holds the placeholder '<volume id>'", "(set in 'defaults')")),
]


def made_study(folder: Path) -> Path:
    """A workspace whose ``steady`` study has three finished trials on its volume; returns studies.yaml."""
    studies = make_workspace(folder)
    config = study_config(studies, "steady")
    storage = open_storage(study_volume(config), config.name, writer=True, cache_dir=folder / "writer-cache")
    study = optuna.create_study(study_name=config.name, storage=storage.optuna)
    for value in (0.3, 0.2, 0.1):
        trial = study.ask(config.distributions())
        study.tell(trial, value)
    storage.flush()
    return studies


def unwritable_folder(folder: Path) -> Path:
    """A folder this user cannot create files in (root can write anywhere but sysfs)."""
    if os.geteuid() == 0:
        return Path("/sys/hpo-report-test")
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked / "out"


def csv_name_taken(folder: Path) -> Path:
    """A report folder where the CSV's name is already a folder: the write itself fails."""
    out = folder / "out"
    (out / "steady-trials.csv").mkdir(parents=True)
    return out


REPORT_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("out-is-a-file", lambda folder: _file(folder / "taken"), ("report folder ", "taken: not a folder")),
    ("out-under-a-file", lambda folder: _file(folder / "taken") / "sub", ("taken/sub: not a folder", "taken is a file")),
    ("out-unwritable", unwritable_folder, ("report folder ", "hpo-report-test" if os.geteuid() == 0 else "locked")),
    ("out-file-name-taken-by-a-folder", csv_name_taken, ("report folder ", "steady-trials.csv")),
]


def _file(path: Path) -> Path:
    path.write_text("not a folder\n")
    return path


def hpo(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m hpo ARGS``, killed after :data:`TIMEOUT` seconds (a hang fails the case)."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args], capture_output=True, text=True, cwd=cwd,
        env=env or {**os.environ, "HPO_CACHE_DIR": str(cwd / "cache")}, timeout=TIMEOUT, check=False,
    )


def hpo_main(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """:func:`hpo` in this process (``hpo.cli.main``): the same answer, without an interpreter start per case."""
    return hpo_in_process(*args, cwd=cwd, env={"HPO_CACHE_DIR": str(cwd / "cache")})


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, expected: tuple[str, ...],
                    absent: tuple[str, ...] = ()) -> None:
    """The answer issue 11 asks for: one line on stderr holding ``expected``, exit ``code``, no traceback."""
    err = result.stderr
    assert "Traceback" not in err, err[-3000:]
    assert result.returncode == code, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("hpo: error: "), lines[0]
    assert len(lines[0]) < 600, lines[0][:600]  # the value was cut, not printed whole
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])
    for fragment in absent:
        assert fragment not in lines[0], (fragment, lines[0][:600])


@pytest.mark.timeout(TIMEOUT, method="thread")  # a hang, even inside C code, fails the case
@pytest.mark.parametrize("case", CONFIG_CASES, ids=[case.id for case in CONFIG_CASES])
def test_bad_studies_file_is_one_line_exit_2(tmp_path: Path, case: Case) -> None:
    studies = tmp_path / "studies.yaml"
    studies.write_text(case.studies(tmp_path) if callable(case.studies) else case.studies, encoding="utf-8")
    result = hpo_main(*case.argv, "--studies", "studies.yaml", cwd=tmp_path)
    assert_one_line(result, case.code, ("studies.yaml", *case.expected), case.absent)


ENTRY_POINT_CASES = ["alias-bomb-in-choices"]
"""Rows also run as ``python -m hpo`` (an interpreter start each: a few seconds), besides the shipped template's."""


@pytest.mark.parametrize("case", [c for c in CONFIG_CASES if c.id in ENTRY_POINT_CASES], ids=ENTRY_POINT_CASES)
def test_the_real_entry_point_gives_the_same_one_line(tmp_path: Path, case: Case) -> None:
    studies = tmp_path / "studies.yaml"
    studies.write_text(case.studies(tmp_path) if callable(case.studies) else case.studies, encoding="utf-8")
    result = hpo(*case.argv, "--studies", "studies.yaml", cwd=tmp_path)
    assert_one_line(result, case.code, ("studies.yaml", *case.expected), case.absent)


@pytest.mark.timeout(TIMEOUT, method="thread")
@pytest.mark.parametrize(("make_out", "expected"), [case[1:] for case in REPORT_CASES],
                         ids=[case[0] for case in REPORT_CASES])
def test_report_out_that_cannot_be_written_is_one_line_exit_1(
    tmp_path: Path, make_out: Callable[[Path], Path], expected: tuple[str, ...]
) -> None:
    studies = made_study(tmp_path / "ws")
    out = make_out(tmp_path)
    result = hpo_main("report", "--study", "steady", "--studies", str(studies), "--out", str(out), cwd=tmp_path)
    assert_one_line(result, 1, (str(out), *expected))


def test_the_shipped_template_study_is_refused_but_its_neighbours_load(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parent.parent / "studies.yaml"
    result = hpo("run", "--study", "f5-lr", "--studies", str(shipped), cwd=tmp_path)  # the real entry point too
    assert_one_line(result, 2, ("study 'f5-lr': key 'compute.image': still holds the placeholder",))
    from hpo.config import load_studies, load_study

    assert load_study(shipped, "demo").name == "demo"
    assert load_study(shipped, "demo-pods").name == "demo-pods"
    assert set(load_studies(shipped).studies) == {"demo", "iris", "demo-pods", "f5-lr"}  # the file as a whole is fine
