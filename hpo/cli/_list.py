"""``hpo list``: the studies in studies.yaml, each with its trials done and its best value.

Each study's storage is opened read-only, as ``hpo status`` opens it (the
journal on its volume as a reader, or its ``storage:`` URL), so the list runs
beside live controllers. A study that cannot be read (its volume unreachable)
gets a row saying so and one line on stderr, and the others are still listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.cli._common import add_studies_argument, print_json
from hpo.errors import HpoError

if TYPE_CHECKING:
    from hpo.config import StudyConfig

NOT_STARTED = "not started"
IN_PROGRESS = "in progress"
FINISHED = "finished"
NOT_SET_UP = "not set up"  # a placeholder is left in the study (a template): nothing to read yet
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class StudyProgress:
    """How far one study is, from its storage: what ``hpo list`` shows in a row.

    ``state`` is one of ``not started`` (no study in its storage), ``in progress``
    (fewer than ``budget`` trials finished, or some still running), ``finished``,
    ``not set up`` (a placeholder left in studies.yaml) and ``unreadable``
    (``problem`` says why).
    """

    study: str
    backend: str
    state: str
    budget: int  # budget.trials
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    problem: str | None = None

    @property
    def done(self) -> int:
        """Trials finished: complete, pruned or failed."""
        return self.complete + self.pruned + self.failed


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "list",
        help="list the studies in studies.yaml: trials done, best value",
        description="List the studies in studies.yaml with their state, trials done (complete, pruned, failed) "
        "of budget.trials, and best value, read from each study's storage (read-only: it runs beside live "
        "controllers). Exit 1 when a study's storage cannot be read (the others are still listed).",
    )
    add_studies_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the studies as JSON")
    parser.set_defaults(handler=list_studies)


def study_progress(config: StudyConfig) -> StudyProgress:
    """Read how far ``config``'s study is, read-only (its journal as a reader, or its storage URL).

    Raises:
        HpoError: Its volume or storage cannot be read.
    """
    from optuna.trial import TrialState

    from hpo.journal import open_storage

    base = StudyProgress(config.name, config.compute.backend, NOT_STARTED, config.budget.trials)
    storage = open_storage(config.volume.open(), config.name, url=config.storage)
    study = storage.load_study(config.name)
    if study is None:
        return base
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    done = [(t.value, t.number) for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    finite = [(value, number) for value, number in done if math.isfinite(value)]
    # The first trial to reach the best value, as Optuna's best_trial picks it.
    best = (min if config.direction == "minimize" else max)(finite, key=lambda pair: pair[0], default=None)
    running = counts[TrialState.RUNNING] + counts[TrialState.WAITING]
    # As the controller counts it: budget.trials trials made, and none left to run.
    finished = running == 0 and len(trials) >= config.budget.trials
    return dataclasses.replace(
        base,
        state=FINISHED if finished else IN_PROGRESS,
        complete=counts[TrialState.COMPLETE],
        pruned=counts[TrialState.PRUNED],
        failed=counts[TrialState.FAIL],
        running=running,
        best_value=best[0] if best is not None else None,
        best_trial=best[1] if best is not None else None,
    )


def _progress_or_problem(path: Path, config: StudyConfig) -> StudyProgress:
    """The study's progress; a template (placeholders left) or an unreadable storage as a row saying so."""
    from hpo.config import placeholder_problem

    placeholder = placeholder_problem(path, config.name)
    if placeholder is not None:  # never run (`hpo run` refuses it), and its volume may be a placeholder too
        return StudyProgress(config.name, config.compute.backend, NOT_SET_UP, config.budget.trials, problem=placeholder)
    try:
        return study_progress(config)
    except HpoError as exc:
        return StudyProgress(config.name, config.compute.backend, UNREADABLE, config.budget.trials, problem=str(exc))


def list_studies(args: argparse.Namespace) -> int:
    from hpo.config import load_studies

    path = Path(args.studies)
    rows = [_progress_or_problem(path, config) for config in load_studies(path).studies.values()]
    unreadable = [row for row in rows if row.state == UNREADABLE]
    if args.json:
        print_json({"studies": [{**dataclasses.asdict(row), "done": row.done} for row in rows]})
    else:
        print_table(rows)
    for row in unreadable:
        print(f"hpo: error: study {row.study!r}: cannot read its storage: {row.problem}", file=sys.stderr)
    return 1 if unreadable else 0


def _best(row: StudyProgress) -> str:
    if row.state == NOT_SET_UP:
        return f"placeholders left: `hpo check --study {row.study}` names them"
    return "-" if row.best_value is None else f"{row.best_value:.6g} (trial {row.best_trial})"


def print_table(rows: list[StudyProgress]) -> None:
    """The rows as plain aligned columns on stdout (greppable; no colours, no box drawing)."""
    lines: list[tuple[str, ...]] = [("study", "backend", "state", "done", "complete", "pruned", "failed", "running", "best")]
    for row in rows:
        read = row.state in (NOT_STARTED, IN_PROGRESS, FINISHED)
        counts = (row.complete, row.pruned, row.failed, row.running) if read else ("-",) * 4
        done = f"{row.done if read else '-'}/{row.budget}"
        lines.append((row.study, row.backend, row.state, done, *map(str, counts), _best(row)))
    widths = [max(len(cell) for cell in column) for column in zip(*lines, strict=True)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
