"""How much CPU the command line costs before it does anything: ``hpo --help``, and ``hpo status`` on a tiny study.

Runs each command as a child process (``python -m hpo ...``) and reads the
CPU seconds it used (user + system, ``resource.getrusage(RUSAGE_CHILDREN)``)
after each one, beside ``python -c pass``, the interpreter's own start-up, as
the baseline of the same run. CPU seconds, not wall time: the development
machine is shared, and a busy neighbour stretches wall time far more than
the CPU a process uses.

The tiny study (6 finished trials of 3 steps each, one attempt log) is
written straight into a journal on a folder volume in a temporary folder,
through the controller's own journal writer; nothing is trained. Each command
runs once unmeasured first (a cold journal cache, ``.pyc`` files), then
``--repeat`` times. It prints figures and asserts nothing.

    python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import optuna
from _child_cpu import run_measured
from optuna.trial import TrialState

from hpo.config import load_study
from hpo.journal import open_storage
from hpo.layout import StudyLayout

optuna.logging.set_verbosity(optuna.logging.WARNING)

REPO = Path(__file__).resolve().parent.parent

STUDIES_YAML = """
studies:
  demo:
    objective: digits_mlp
    search_space:
      lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
      hidden: {type: int, low: 32, high: 512, step: 32}
      activation: {type: categorical, choices: [relu, tanh]}
    sampler: {type: random, seed: 0}
    pruner: {type: median}
    fidelity: {max_step: 3}
    compute: {backend: local}
    budget: {trials: 6, concurrency: 2}
    volume: {path: storage}
"""


def make_study(root: Path) -> Path:
    """A project folder with studies.yaml and a 6-trial study ``demo`` on its folder volume; returns studies.yaml."""
    studies = root / "studies.yaml"
    studies.write_text(STUDIES_YAML)
    config = load_study(studies, "demo")
    volume = config.volume.open()
    storage = open_storage(volume, "demo", writer=True, cache_dir=root / "writer-cache")
    study = optuna.create_study(study_name="demo", storage=storage.optuna, sampler=optuna.samplers.RandomSampler(seed=0))
    ends = [TrialState.COMPLETE] * 3 + [TrialState.PRUNED] * 2 + [TrialState.FAIL]
    for number, end in enumerate(ends):
        trial = study.ask(config.distributions())
        for step in range(1, 4):
            trial.report(1.0 / (step + number), step)
        study.tell(trial, 1.0 / (3 + number) if end == TrialState.COMPLETE else None, state=end)
    storage.flush()
    volume.append_bytes(StudyLayout("demo").log(0, 0), b"epoch 1: val_loss 0.5\n" * 50)
    return studies


def cpu_seconds(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """The CPU seconds (user + system) one run of ``command`` took, as its parent sees them."""
    seconds, done = run_measured(command, cwd, env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured runs of each command (default 5)")
    args = parser.parse_args(argv)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="hpo-cli-startup-") as tmp:
        root = Path(tmp)
        make_study(root)
        env = {**os.environ, "HPO_CACHE_DIR": str(root / "cache"), "PYTHONPATH": str(REPO)}
        commands = {
            "python -c pass (baseline)": [python, "-c", "pass"],
            "python -m hpo --help": [python, "-m", "hpo", "--help"],
            "python -m hpo status --study demo": [python, "-m", "hpo", "status", "--study", "demo"],
            "python -m hpo list": [python, "-m", "hpo", "list"],
            "python -m hpo logs --study demo --trial 0": [python, "-m", "hpo", "logs", "--study", "demo", "--trial", "0"],
        }
        figures: dict[str, list[float]] = {}
        for name, command in commands.items():
            cpu_seconds(command, root, env)  # unmeasured: a cold cache and fresh .pyc files are not start-up
            figures[name] = [cpu_seconds(command, root, env) for _ in range(args.repeat)]
    baseline = statistics.median(figures["python -c pass (baseline)"])
    print(f"CPU seconds (user + system) per run, median and min of {args.repeat} runs, Python {sys.version.split()[0]}")
    print(f"{'command':44} {'median':>7} {'min':>7} {'over baseline':>14}")
    for name, values in figures.items():
        median = statistics.median(values)
        over = "" if name.endswith("(baseline)") else f"{median - baseline:+.3f}"
        print(f"{name:44} {median:7.3f} {min(values):7.3f} {over:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
