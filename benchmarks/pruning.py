"""Which pruner to choose: the demo study run unpruned and with each of Optuna's pruners, over several seeds.

For each sampler seed (``--seeds``), the demo runs once unpruned (``{type:
none}``) and once with each pruner, each run in its own workspace (a copy of
objectives/ and a generated studies.yaml), so every run starts from an empty
study. Per run it measures, from the attempts' own event files
(``trials/<n>/attempts/<a>/events.jsonl``):

* trial-seconds: the sum over every attempt (pruned ones included) of its
  final event's time minus its start event's time: how long attempts held a
  worker, from the objective's start to its end;
* CPU-seconds: the sum of the final events' ``cpu_seconds`` (each attempt's
  own ``RUSAGE_SELF``, process start-up included), and, as a cross-check, the
  kernel's ``RUSAGE_CHILDREN`` of this process over the run (every process
  it reaped: attempts, and warm workers with the attempts they forked, which
  count once the worker is reaped: the run's workers are waited for at its end);
* the best value found, the trial counts and the wall time.

Trial-seconds are wall time, and stretch when other processes load the
machine (more so for the runs with more attempts at once); the CPU-seconds
ratio is printed beside it, and the choice by it too, as the steadier figure.

Per pruner, over the seeds: the median of the trial-seconds ratio (with the
pruner / unpruned, same seed), and the regret of the best found: the median
over seeds of how much worse the pruned run's best is than a reference best,
the best that any unpruned run found over all the seeds, as a percentage of
that reference. The unpruned row shows the same regret for the unpruned runs
themselves, the noise floor of the seed. A pruner "keeps the best" when its
median regret is within 2 %; the recommendation is the one of those with the
smallest ratio.

Pruner settings for the demo's 50-epoch fidelity, modelled on the demo's own
median pruner (5 startup trials, no decision before epoch 10, one every epoch):

* median: the demo's ``{n_startup_trials: 5, n_warmup_steps: 10, interval_steps: 1}``;
* percentile: the same, at the 25th percentile (stops every trial outside the
  best quarter: the aggressive end; median is the 50th);
* successive_halving: rungs at epochs 10, 20 and 40 (``min_resource: 10``,
  ``reduction_factor: 2``): the best half goes on at each rung, as with median;
* hyperband: the same rungs and factor (``min_resource: 10``,
  ``reduction_factor: 2``; ``max_resource`` is the fidelity's 50 epochs), so 3 brackets;
* wilcoxon and patient: studies.yaml has no such ``type`` (hpo/config/_algorithms.py
  knows median, percentile, successive_halving, hyperband and none): they are
  skipped with a note.

Fixed CPU per attempt before training: a variant of the demo objective that
does everything digits_mlp does before its first epoch (its ``suggest_*``
calls, loading the data, reading the checkpoint, initialising the weights)
and returns, run unpruned for a few trials: the median of its attempts'
``cpu_seconds`` is what each attempt pays before it trains (process start,
imports, the objective's set-up). An attempt forked from a warm worker counts
only what it spent after the fork (``RUSAGE_SELF`` starts at zero in a child),
so that figure is what a warm worker brings down; the second figure, the run's
children CPU divided by its attempts, shares the workers' own start-up among
the attempts they ran (with 3 or 6 attempts, a large share: run more
``--fixed-trials`` for a fairer amortised figure).

It asserts nothing: these machines are shared and noisy, so read the figures.

    python benchmarks/pruning.py [--seeds 0,1,2,3,4] [--pruners median,hyperband] [--trials 24]
                                 [--concurrency 3] [--quick] [--studies studies.yaml] [--study demo]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from hpo.config import load_study  # noqa: E402
from hpo.controller import build_controller  # noqa: E402

#: The pruners compared, in studies.yaml syntax (see the module docstring for why these settings).
PRUNERS: dict[str, dict] = {
    "median": {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 10, "interval_steps": 1},
    "percentile": {"type": "percentile", "percentile": 25.0, "n_startup_trials": 5, "n_warmup_steps": 10, "interval_steps": 1},
    "successive_halving": {"type": "successive_halving", "min_resource": 10, "reduction_factor": 2},
    "hyperband": {"type": "hyperband", "min_resource": 10, "reduction_factor": 2},
    "wilcoxon": {"type": "wilcoxon", "p_threshold": 0.1, "n_startup_steps": 10},
    "patient": {"type": "patient", "wrapped": {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 10}, "patience": 3},
}
UNPRUNED = "none"
WITHIN = 2.0  # percent: the regret a pruner may cost and still count as keeping the best
QUICK_PRUNERS = ("median", "hyperband")
FINAL_TYPES = frozenset({"done", "pruned", "error", "stopped", "preempted", "interrupted"})

#: Everything digits_mlp does before its first epoch, and nothing after (for the fixed CPU per attempt).
SETUP_OBJECTIVE = '''"""digits_mlp up to its first epoch: what an attempt pays before it trains (benchmarks/pruning.py)."""

import numpy as np

from objectives.digits_mlp import init_weights, load_data


def objective(trial):
    trial.suggest_float("lr")
    hidden = trial.suggest_int("hidden")
    depth = trial.suggest_int("depth")
    trial.suggest_float("weight_decay")
    trial.suggest_categorical("batch_size")
    trial.suggest_categorical("activation")
    x_train, _y_train, _x_val, _y_val = load_data()
    state = trial.load_checkpoint()
    if state is None:
        rng = np.random.default_rng(trial.number)
        weights = init_weights(rng, [x_train.shape[1]] + [hidden] * depth + [10])
        state = {"weights": weights, "velocity": {name: np.zeros_like(w) for name, w in weights.items()}}
    return 0.0
'''


# -- the arithmetic (pure: tests/test_benchmark_pruning.py) -------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt as its event file tells it."""

    seconds: float | None  # final event t - start event t; None when it has no start or no end
    cpu_seconds: float | None  # the final event's cpu_seconds
    end: str | None  # the final event's type


def attempt_from_events(events: Iterable[Mapping]) -> Attempt:
    """Read one attempt's events (dicts, in file order): its duration, its CPU-seconds, how it ended."""
    start_t = end_t = cpu = end = None
    for event in events:
        kind, t = event.get("type"), event.get("t")
        if kind == "start" and start_t is None and isinstance(t, (int, float)):
            start_t = float(t)
        elif kind in FINAL_TYPES and end is None:
            end = kind
            end_t = float(t) if isinstance(t, (int, float)) else None
            value = event.get("cpu_seconds")
            cpu = float(value) if isinstance(value, (int, float)) else None
    seconds = end_t - start_t if start_t is not None and end_t is not None else None
    return Attempt(seconds=None if seconds is None else max(0.0, seconds), cpu_seconds=cpu, end=end)


def total(values: Iterable[float | None]) -> float:
    """The sum of the known values."""
    return sum(v for v in values if v is not None)


def ratio_median(pruned: Mapping[int, float], unpruned: Mapping[int, float]) -> float | None:
    """The median over seeds of ``pruned[seed] / unpruned[seed]``, over the seeds both have (unpruned > 0)."""
    ratios = [pruned[s] / unpruned[s] for s in pruned if s in unpruned and unpruned[s] > 0]
    return statistics.median(ratios) if ratios else None


def reference_best(bests: Iterable[float | None], direction: str = "minimize") -> float | None:
    """The best of the values found (None when none was)."""
    found = [b for b in bests if b is not None and math.isfinite(b)]
    if not found:
        return None
    return min(found) if direction == "minimize" else max(found)


def regret_percent(best: float, reference: float, direction: str = "minimize") -> float:
    """How much worse ``best`` is than ``reference``, in percent of ``|reference|`` (negative: better)."""
    gap = best - reference if direction == "minimize" else reference - best
    if reference == 0:
        return 0.0 if gap == 0 else math.copysign(math.inf, gap)
    return 100.0 * gap / abs(reference)


def regret_median(bests: Mapping[int, float | None], reference: float, direction: str = "minimize") -> float | None:
    """The median over seeds of :func:`regret_percent`; a seed that found nothing counts as infinitely bad."""
    if not bests:
        return None
    return statistics.median(
        math.inf if b is None or not math.isfinite(b) else regret_percent(b, reference, direction) for b in bests.values()
    )


def choose(rows: Mapping[str, tuple[float | None, float | None]], within: float = WITHIN) -> str | None:
    """The pruner to choose: the smallest ratio among those whose regret is within ``within`` percent.

    ``rows`` maps a pruner to ``(median ratio, median regret %)``; a tie goes to
    the lower regret, then the name. None when no pruner keeps the best.
    """
    fits = [
        (ratio, regret, name)
        for name, (ratio, regret) in rows.items()
        if ratio is not None and regret is not None and regret <= within
    ]
    return min(fits)[2] if fits else None


# -- the runs -----------------------------------------------------------------------------------


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_children(timeout: float = 30.0) -> None:
    """Wait for this process's children (warm workers the run ended) so that their CPU counts in this run.

    The kernel adds a child's CPU, and that of the attempts it forked and
    reaped, to ``RUSAGE_CHILDREN`` only once the child is reaped: a worker
    reaped during the next run would count there.
    """
    children = psutil.Process().children()
    if not children:
        return
    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    if alive:
        print(f"note: {len(alive)} child process(es) still alive {timeout:g} s after the run "
              f"(pids {', '.join(str(c.pid) for c in alive)}): their CPU counts later", flush=True)


def read_attempts(root: Path) -> list[Attempt]:
    """Every attempt of the study whose volume folder is ``root`` (``.../hpo/<study>``)."""
    attempts = []
    for path in sorted(root.glob("trials/*/attempts/*/events.jsonl")):
        events = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        attempts.append(attempt_from_events(events))
    return attempts


def run_study(study: dict, name: str, work: Path, extra_objectives: Mapping[str, str] | None = None) -> dict:
    """Run ``study`` (a studies.yaml entry) as ``name`` in its own workspace under ``work``, and measure it."""
    project = work / name
    shutil.copytree(REPO / "objectives", project / "objectives", ignore=shutil.ignore_patterns("__pycache__"))
    for module, source in (extra_objectives or {}).items():
        (project / "objectives" / f"{module}.py").write_text(source)
    study = dict(study, volume={"path": "storage"})
    (project / "studies.yaml").write_text(yaml.safe_dump({"studies": {name: study}}))
    config = load_study(project / "studies.yaml", name)
    controller = build_controller(config, cache_dir=work / "cache")
    cpu_before, wall_before = children_cpu_seconds(), time.perf_counter()
    summary = controller.run()
    wall = time.perf_counter() - wall_before
    reap_children()
    rusage_cpu = children_cpu_seconds() - cpu_before
    attempts = read_attempts(project / "storage" / "hpo" / name)
    return {
        "trial_seconds": total(a.seconds for a in attempts),
        "event_cpu": total(a.cpu_seconds for a in attempts),
        "rusage_cpu": rusage_cpu,
        "wall": wall,
        "attempts": attempts,
        "summary": summary,
    }


def demo_study(base: dict, seed: int, pruner: dict, trials: int, concurrency: int) -> dict:
    """The study ``base`` with this sampler seed, pruner and budget."""
    study = dict(base, pruner=pruner)
    study["sampler"] = dict(base.get("sampler") or {"type": "tpe"}, seed=seed)
    study["budget"] = dict(study["budget"], trials=trials, concurrency=concurrency)
    return study


def fixed_cpu(base: dict, work: Path, trials: int, concurrency: int) -> tuple[list[float], float | None]:
    """The set-up-only variant of the objective: each attempt's CPU-seconds, and the run's children CPU per attempt.

    The first is each attempt's ``RUSAGE_SELF`` at its final event; the second
    is this process's ``RUSAGE_CHILDREN`` over the run divided by the attempts:
    it adds each process's exit, and, with warm workers, their parents'
    start-up shared among the attempts they ran (counted once they are reaped).
    """
    study = dict(base, objective="digits_setup", pruner={"type": "none"})
    study["budget"] = dict(study["budget"], trials=trials, concurrency=concurrency)
    result = run_study(study, "fixed-cpu", work, {"digits_setup": SETUP_OBJECTIVE})
    attempts = result["attempts"]
    per_attempt = [a.cpu_seconds for a in attempts if a.cpu_seconds is not None and a.end == "done"]
    return per_attempt, (result["rusage_cpu"] / len(attempts) if attempts else None)


def supported_pruners() -> set[str]:
    from hpo.config._algorithms import PRUNER_TYPES

    return set(PRUNER_TYPES)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", default=str(REPO / "studies.yaml"))
    parser.add_argument("--study", default="demo")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="sampler seeds, comma-separated (default 0,1,2,3,4)")
    parser.add_argument("--pruners", default=",".join(PRUNERS), help=f"a subset of {','.join(PRUNERS)}")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--fixed-trials", type=int, default=6, help="trials of the set-up-only objective (0: skip)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke check: seed 0, {' and '.join(QUICK_PRUNERS)}, 8 trials")
    args = parser.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    wanted = [p.strip() for p in args.pruners.split(",") if p.strip()]
    trials, fixed_trials = args.trials, args.fixed_trials
    if args.quick:
        seeds, wanted, trials, fixed_trials = seeds[:1], list(QUICK_PRUNERS), 8, min(fixed_trials, 3)
    unknown = [p for p in wanted if p not in PRUNERS]
    if unknown:
        parser.error(f"unknown pruners {unknown}; known: {', '.join(PRUNERS)}")
    supported = supported_pruners()
    pruners = []
    for name in wanted:
        if PRUNERS[name]["type"] in supported:
            pruners.append(name)
        else:
            print(f"note: skipping {name}: studies.yaml has no pruner type {PRUNERS[name]['type']!r} "
                  f"(hpo/config/_algorithms.py knows {', '.join(sorted(supported))})")

    base = yaml.safe_load(Path(args.studies).read_text())["studies"][args.study]
    direction = base.get("direction", "minimize")
    print(f"study {args.study}: {trials} trials, concurrency {args.concurrency}, seeds {seeds}, "
          f"sampler {base.get('sampler', {}).get('type', 'tpe')}, fidelity {base.get('fidelity')}")
    for name in pruners:
        print(f"  {name}: {PRUNERS[name]}")
    sys.stdout.flush()

    results: dict[str, dict[int, dict]] = {UNPRUNED: {}, **{name: {} for name in pruners}}
    print(f"\n{'seed':>4} {'pruner':<18} {'trial-s':>8} {'CPU-s ev':>9} {'CPU-s ru':>9} {'wall s':>7} "
          f"{'done':>5} {'pruned':>6} {'fail':>5} {'best':>8}")
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        work = Path(tmp)
        for seed in seeds:
            for name in [UNPRUNED, *pruners]:
                pruner = {"type": "none"} if name == UNPRUNED else PRUNERS[name]
                study = demo_study(base, seed, pruner, trials, args.concurrency)
                r = run_study(study, f"s{seed}-{name.replace('_', '-')}", work)
                results[name][seed] = r
                s = r["summary"]
                print(f"{seed:>4} {name:<18} {r['trial_seconds']:>8.1f} {r['event_cpu']:>9.1f} {r['rusage_cpu']:>9.1f} "
                      f"{r['wall']:>7.1f} {s.complete:>5} {s.pruned:>6} {s.failed:>5} {_fmt(s.best_value, '8.4f'):>8}",
                      flush=True)
        setup_cpu, setup_amortized = (
            fixed_cpu(base, work, fixed_trials, min(args.concurrency, 2)) if fixed_trials > 0 else ([], None)
        )

    unpruned_seconds = {seed: r["trial_seconds"] for seed, r in results[UNPRUNED].items()}
    unpruned_cpu = {seed: r["event_cpu"] for seed, r in results[UNPRUNED].items()}
    reference = reference_best((r["summary"].best_value for r in results[UNPRUNED].values()), direction)
    print(f"\nreference best (the best of the unpruned runs over {len(seeds)} seed(s)): {_fmt(reference, '.4f')}")
    print(f"medians over {len(seeds)} seed(s); ratio = trial-seconds with the pruner / unpruned, same seed; "
          f"regret = (best found - reference) / reference")
    print(f"{'pruner':<18} {'trial-s ratio':>13} {'CPU-s ratio':>11} {'regret %':>9} {f'within {WITHIN:g} %':>11} "
          f"{'pruned/run':>10}")
    rows: dict[str, tuple[float | None, float | None]] = {}
    cpu_rows: dict[str, tuple[float | None, float | None]] = {}
    for name in [UNPRUNED, *pruners]:
        runs = results[name]
        ratio = ratio_median({s: r["trial_seconds"] for s, r in runs.items()}, unpruned_seconds)
        cpu_ratio = ratio_median({s: r["event_cpu"] for s, r in runs.items()}, unpruned_cpu)
        regret = (
            None if reference is None
            else regret_median({s: r["summary"].best_value for s, r in runs.items()}, reference, direction)
        )
        if name != UNPRUNED:
            rows[name], cpu_rows[name] = (ratio, regret), (cpu_ratio, regret)
        within = "-" if regret is None else ("yes" if regret <= WITHIN else "no")
        pruned = statistics.median(r["summary"].pruned for r in runs.values())
        print(f"{name:<18} {_fmt(ratio, '13.2f')} {_fmt(cpu_ratio, '11.2f')} {_fmt(regret, '9.2f')} {within:>11} "
              f"{pruned:>10g}")
    pick = choose(rows)
    if pick is None:
        print(f"choose: no pruner kept the best within {WITHIN:g} % on this demo: keep none")
    else:
        print(f"choose: {pick} (the smallest trial-seconds ratio, {rows[pick][0]:.2f}, among the pruners within "
              f"{WITHIN:g} % of the reference best; its regret {rows[pick][1]:.2f} %)")
    cpu_pick = choose(cpu_rows)
    print(f"by CPU-seconds instead (steadier than trial-seconds when the machine is loaded): {cpu_pick or 'none'}")

    if setup_cpu:
        print(f"\nfixed CPU per attempt before training (the set-up-only objective, {len(setup_cpu)} attempts): "
              f"median {statistics.median(setup_cpu):.3f} s, min {min(setup_cpu):.3f} s, max {max(setup_cpu):.3f} s "
              f"(each attempt's own CPU at its final event); {_fmt(setup_amortized, '.3f')} s per attempt counting "
              f"whole processes (the run's children CPU / attempts: exits, and warm workers' parents, included)")
    elif fixed_trials > 0:
        print("\nfixed CPU per attempt before training: no attempt of the set-up-only objective reported its CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
