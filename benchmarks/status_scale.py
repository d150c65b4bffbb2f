"""How much CPU ``hpo status`` costs on a large study: 2,000 trials x 50 reports, by default, ``--all`` and ``--json``.

The study is made by Optuna itself into a local journal file (a mix a long
study has: mostly complete and pruned trials, some failed ones with an error,
a few running and queued), then written into the study's journal on a folder
volume through the controller's own journal writer (a flush per ~10 trials,
compaction on), beside a studies.yaml in a temporary folder.

Each command runs as a child process (``python -m hpo status ...``) and its
CPU seconds (user + system, ``resource.getrusage(RUSAGE_CHILDREN)``) are read
after it, beside ``python -c pass`` as the baseline of the same run; the
default view runs at 80 x 24 (``COLUMNS``/``LINES``), as a terminal would
give it. Each command runs once unmeasured first (a cold journal cache,
``.pyc`` files), then ``--repeat`` times. It prints figures, asserts nothing.

    python benchmarks/status_scale.py [--trials 2000] [--reports 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna
from _child_cpu import run_measured
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from hpo.config import StudyConfig, load_study
from hpo.journal import VolumeJournalBackend
from hpo.trial_attrs import ATTR_ATTEMPTS, ATTR_ERROR, ATTR_QUEUED

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parent.parent

STUDIES_YAML = """
studies:
  big:
    objective: digits_mlp
    search_space:
      lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
      hidden: {type: int, low: 32, high: 512, step: 32}
      depth: {type: int, low: 1, high: 3}
      weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
      batch_size: {type: categorical, choices: [16, 32, 64, 128]}
      activation: {type: categorical, choices: [relu, tanh]}
    sampler: {type: random, seed: 0}
    pruner: {type: median}
    fidelity: {max_step: REPORTS}
    compute: {backend: local}
    budget: {trials: TRIALS, concurrency: 8}
    volume: {path: storage}
"""

RUNNING = 8
"""Trials left running at the end of the study (the last ones); half of them wait for capacity (queued)."""


def build_logs(path: Path, config: StudyConfig, trials: int, reports: int) -> list[dict[str, Any]]:
    """The study's journal logs, made by Optuna into a local journal file: every 3rd trial pruned, every 97th failed."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name=config.name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for number in range(trials):
        trial = study.ask(config.distributions())
        trial.set_user_attr(ATTR_ATTEMPTS, 1)
        trial.set_user_attr("cpu_seconds", 10.0 + number % 7)
        lr = float(trial.params["lr"])
        running = number >= trials - RUNNING
        pruned = number % 3 == 1
        last = reports // 2 if running or pruned else reports
        for step in range(1, last + 1):
            trial.report(lr + 1.0 / step, step)
        if running:
            if number % 2:
                trial.set_user_attr(ATTR_QUEUED, True)
        elif number % 97 == 5:
            trial.set_user_attr(ATTR_ERROR, f"RuntimeError: CUDA out of memory in trial {number} [step {last}]")
            study.tell(trial, None, state=TrialState.FAIL)
        elif pruned:
            study.tell(trial, None, state=TrialState.PRUNED)
        else:
            study.tell(trial, lr + 1.0 / reports)
    return list(JournalFileBackend(str(path)).read_logs(0))


def make_study(root: Path, trials: int, reports: int) -> Path:
    """A project folder with studies.yaml and the study ``big`` in its journal on the folder volume; returns studies.yaml."""
    studies = root / "studies.yaml"
    studies.write_text(STUDIES_YAML.replace("REPORTS", str(reports)).replace("TRIALS", str(trials)))
    config = load_study(studies, "big")
    logs = build_logs(root / "optuna.journal", config, trials, reports)
    writer = VolumeJournalBackend(config.volume.open(), config.name, writer=True, cache_dir=root / "writer-cache")
    per_flush = max(1, len(logs) // (trials // 10 or 1))  # one flush per ~10 trials, as a controller would
    for start in range(0, len(logs), per_flush):
        writer.append_logs(logs[start : start + per_flush])
        writer.flush()
    return studies


def cpu_seconds(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """The CPU seconds (user + system) one run of ``command`` took, as its parent sees them, and its output's lines.

    A command that fails counts NaN seconds (an option this version lacks), after its error on stderr.
    """
    seconds, done = run_measured(command, cwd, env)
    if done.returncode != 0:
        print(f"{' '.join(command[1:])} exited {done.returncode}: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return float("nan"), 0
    return seconds, len(done.stdout.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="measured runs of each command (default 3)")
    args = parser.parse_args(argv)
    python = sys.executable
    status = [python, "-m", "hpo", "status", "--study", "big"]
    commands = {
        "python -c pass (baseline)": [python, "-c", "pass"],
        "hpo status (80 x 24)": status,
        "hpo status --all (80 columns)": [*status, "--all"],
        "hpo status --json": [*status, "--json"],
    }
    with tempfile.TemporaryDirectory(prefix="hpo-status-scale-") as tmp:
        root = Path(tmp)
        print(f"building {args.trials} trials x {args.reports} reports ...", file=sys.stderr)
        make_study(root, args.trials, args.reports)
        env = {**os.environ, "HPO_CACHE_DIR": str(root / "cache"), "PYTHONPATH": str(REPO), "COLUMNS": "80", "LINES": "24"}
        figures: dict[str, list[float]] = {}
        lines: dict[str, int] = {}
        for name, command in commands.items():
            cpu_seconds(command, root, env)  # unmeasured: a cold cache and fresh .pyc files
            runs = [cpu_seconds(command, root, env) for _ in range(args.repeat)]
            figures[name] = [seconds for seconds, _ in runs]
            lines[name] = runs[-1][1]
    baseline = statistics.median(figures["python -c pass (baseline)"])
    print(f"hpo status on {args.trials} trials x {args.reports} reports: CPU seconds (user + system) per run, "
          f"median and min of {args.repeat}, Python {sys.version.split()[0]}")
    print(f"{'command':32} {'median':>7} {'min':>7} {'x baseline':>11} {'lines out':>10}")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:32} {median:7.3f} {min(values):7.3f} {median / baseline:11.1f} {lines[name]:10d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
