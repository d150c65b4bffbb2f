"""The controller's CPU per poll at 200 live trials, over growing histories of finished trials.

A poll should cost what changed since the last one (200 new reports), not
what happened before: the figures for a history of 2,000 or 10,000 finished
trials should match those for none. The controller is built as the tests
build it (tests/controller_harness.py), with a scripted backend whose workers
are trivial: each poll, this script appends one report to every live trial's
event file on a folder volume, then times ``cycle()`` with
``time.process_time`` (this process's CPU, not the wall: the journal's fsyncs
wait on the disk, they do not burn CPU). History trials are written straight
into the journal (one log each, with ten intermediate values) before the
controller starts.

Prints, per history: the median and the worst CPU milliseconds of a poll, the
ratio of the median against history 0 (same run), and the journal logs the
controller wrote per report (a report costs one log for its intermediate
value; anything more is bookkeeping). It asserts nothing: read the figures.

    python benchmarks/scale.py [--live 200] [--histories 0,2000,10000] [--polls 15] [--pruner none|median]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the harness and its in-memory helpers live with the tests
sys.path.insert(1, str(REPO))  # the package itself, when it is not installed

from controller_harness import Seam  # noqa: E402

PRUNERS = {"none": "{type: none}", "median": "{type: median, n_startup_trials: 5, n_warmup_steps: 0}"}
HISTORY_STEPS = 10  # intermediate values per finished trial of the history


def write_history(seam: Seam, finished: int) -> None:
    """``finished`` COMPLETE trials in the study's journal, before its controller begins."""
    storage = seam.controller.storage
    study = optuna.create_study(study_name="seam", storage=storage.optuna, direction="minimize", load_if_exists=True)
    dist = FloatDistribution(0.0, 1.0)
    for number in range(finished):
        # Worse than any live trial's values (below): the median pruner never prunes the live ones.
        value = 1.0 + (number % 97) / 97
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=value,
                params={"x": (number % 89) / 89},
                distributions={"x": dist},
                intermediate_values={step: value + 1.0 / (step + 1) for step in range(HISTORY_STEPS)},
            )
        )
    storage.flush()


def measure(root: Path, history: int, live: int, polls: int, pruner: str) -> dict[str, float]:
    """CPU seconds of each measured poll and the journal logs per report, for one history."""
    seam = Seam(
        root, pruner=PRUNERS[pruner], max_step=100_000, trials=history + live + 1_000, concurrency=live, volume="directory"
    )
    write_history(seam, history)
    controller = seam.controller
    controller.begin()
    journal = controller.storage.journal
    assert journal is not None, "the harness's storage is a volume journal"
    warmup = 3
    times: list[float] = []
    logs_before = reports = 0
    for poll in range(warmup + polls):
        if poll == warmup:
            logs_before, reports = journal.log_count, 0
        for run in list(controller.runs.values()):
            seam.reports(run.number, {poll: 0.5 / (poll + 1)}, attempt=run.attempt)
            reports += 1
        seam.clock.sleep(1.0)
        start = time.process_time()
        controller.cycle()
        elapsed = time.process_time() - start
        if poll >= warmup:
            times.append(elapsed)
    logs = journal.log_count - logs_before
    return {
        "median": statistics.median(times),
        "worst": max(times),
        "logs_per_report": logs / max(1, reports),
        "live": len(controller.runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live", type=int, default=200)
    parser.add_argument("--histories", default="0,2000,10000")
    parser.add_argument("--polls", type=int, default=15)
    parser.add_argument("--pruner", choices=sorted(PRUNERS), default="none")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    histories = [int(h) for h in args.histories.split(",")]
    print(f"{args.live} live trials, {args.polls} polls measured per history, pruner {args.pruner}")
    print(f"{'history':>8} {'live':>5} {'median ms/poll':>15} {'worst ms':>9} {'vs history 0':>13} {'logs/report':>12}")
    base: float | None = None
    for history in histories:
        with tempfile.TemporaryDirectory(prefix="hpo-scale-") as tmp:
            result = measure(Path(tmp), history, args.live, args.polls, args.pruner)
        base = base if base is not None else result["median"]
        ratio = result["median"] / base if base else float("nan")
        print(
            f"{history:>8} {result['live']:>5.0f} {result['median'] * 1000:>15.1f} {result['worst'] * 1000:>9.1f} "
            f"{ratio:>13.2f} {result['logs_per_report']:>12.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
