"""Where each file of a study lives on the volume (one writer per file).

::

    hpo/<study>/lease.json                               controller holding the study
    hpo/<study>/journal/<first log number>.jsonl         controller: Optuna journal segments
    hpo/<study>/journal/upto-<log count>.jsonl           controller: logs 0..count-1 in one object (compaction)
    hpo/<study>/code/<sha256>.tar.gz                     controller: snapshot of objectives/
    hpo/<study>/trials/<n>/spec.json                     controller: what trial n runs
    hpo/<study>/trials/<n>/control.json                  controller: prune / stop
    hpo/<study>/trials/<n>/attempts/<a>/launch.json      controller: what runs attempt a (pid, pod id)
    hpo/<study>/trials/<n>/attempts/<a>/events.jsonl     attempt a only: its events
    hpo/<study>/trials/<n>/attempts/<a>/log.txt          attempt a only: its stdout and stderr
    hpo/<study>/trials/<n>/ckpt/                         the objective's checkpoints
"""

from __future__ import annotations

from dataclasses import dataclass

JOURNAL_SEGMENT_DIGITS = 12


@dataclass(frozen=True)
class StudyLayout:
    """The keys of one study's files on the volume."""

    study: str

    @property
    def root(self) -> str:
        return f"hpo/{self.study}"

    @property
    def lease(self) -> str:
        return f"{self.root}/lease.json"

    @property
    def journal_dir(self) -> str:
        return f"{self.root}/journal"

    def journal_segment(self, first_log_number: int) -> str:
        """A segment is named by the number of its first log, so a reader knows the next name."""
        return f"{self.journal_dir}/{first_log_number:0{JOURNAL_SEGMENT_DIGITS}d}.jsonl"

    def journal_compaction(self, log_count: int) -> str:
        """Logs 0..count-1 in one object, so opening a long study reads one object, not thousands."""
        return f"{self.journal_dir}/upto-{log_count:0{JOURNAL_SEGMENT_DIGITS}d}.jsonl"

    def parse_journal_key(self, key: str) -> tuple[str, int] | None:
        """``("segment", first log)`` or ``("compaction", log count)`` for a journal key, else None."""
        name = key.rsplit("/", 1)[-1]
        if not name.endswith(".jsonl"):
            return None
        stem = name[: -len(".jsonl")]
        kind = "segment"
        if stem.startswith("upto-"):
            kind, stem = "compaction", stem[len("upto-") :]
        if len(stem) != JOURNAL_SEGMENT_DIGITS or not stem.isdigit():
            return None
        return kind, int(stem)

    def code(self, sha256: str) -> str:
        return f"{self.root}/code/{sha256}.tar.gz"

    @property
    def trials_dir(self) -> str:
        return f"{self.root}/trials"

    def trial_dir(self, trial: int) -> str:
        return f"{self.trials_dir}/{trial}"

    def spec(self, trial: int) -> str:
        return f"{self.trial_dir(trial)}/spec.json"

    def control(self, trial: int) -> str:
        return f"{self.trial_dir(trial)}/control.json"

    def checkpoint_dir(self, trial: int) -> str:
        return f"{self.trial_dir(trial)}/ckpt"

    def attempt_dir(self, trial: int, attempt: int) -> str:
        return f"{self.trial_dir(trial)}/attempts/{attempt}"

    def launch(self, trial: int, attempt: int) -> str:
        return f"{self.attempt_dir(trial, attempt)}/launch.json"

    def events(self, trial: int, attempt: int) -> str:
        return f"{self.attempt_dir(trial, attempt)}/events.jsonl"

    def log(self, trial: int, attempt: int) -> str:
        return f"{self.attempt_dir(trial, attempt)}/log.txt"
