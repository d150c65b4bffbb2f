"""Where each file of a study lives on the volume (one writer per file).

::

    hpo/<study>/lease.json                               controller holding the study
    hpo/<study>/journal/<first log>-e<epoch>-<token>.jsonl   controller: Optuna journal segments
    hpo/<study>/journal/range-<from>-<to>-e<epoch>-<token>.jsonl  controller: logs from..to-1 in one object (compaction)
    hpo/<study>/journal/upto-<count>-e<epoch>-<token>.jsonl  older controllers: logs 0..count-1 (still read)
    hpo/<study>/journal/epochs/<epoch>-<token>-from-<first log>.json   controller: its epoch (see hpo.journal)
    hpo/<study>/code/<sha256>.tar.gz                     controller: snapshot of objectives/
    hpo/<study>/trials/<n>/spec.json                     controller: what trial n runs
    hpo/<study>/trials/<n>/control.json                  controller: prune / stop
    hpo/<study>/trials/<n>/attempts/<a>/launch.json      controller: what runs attempt a (pid, pod id)
    hpo/<study>/trials/<n>/attempts/<a>/events.jsonl     attempt a only: its events
    hpo/<study>/trials/<n>/attempts/<a>/log.txt          attempt a only: its stdout and stderr
    hpo/<study>/trials/<n>/ckpt/                         the objective's checkpoints
    hpo/<study>/jobs/<id>/job.json                       hpo job: the one-off command job <id> runs
    hpo/<study>/jobs/<id>/launch.json                    hpo job: what runs it (pod id, pid)
    hpo/<study>/jobs/<id>/log.txt                        job <id>'s runner only: the command's output
    hpo/<study>/jobs/<id>/status.json                    job <id>'s runner only: running, then how it ended
    hpo/<study>/controller/bundle-<sha256>.json          hpo run --remote: the study and code its controller pod runs
    hpo/<study>/controller/log.txt                       the controller pod only: the controller's output
    hpo/<study>/controller/restarts.json                 the controller pod only: its recent failed starts
    hpo/<study>/controller/stop.json                     hpo stop: asks the study's controller to stop
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

JOURNAL_SEGMENT_DIGITS = 12
JOURNAL_EPOCH_DIGITS = 8
JOURNAL_TOKEN_CHARS = 8
"""Epoch tokens are this many lowercase hex digits (they order two writers that took the same epoch number)."""

_EPOCH_SUFFIX = rf"(?:-e(\d{{{JOURNAL_EPOCH_DIGITS}}})-([0-9a-f]{{{JOURNAL_TOKEN_CHARS}}}))?"
_SEGMENT_RE = re.compile(rf"(\d{{{JOURNAL_SEGMENT_DIGITS}}}){_EPOCH_SUFFIX}\.jsonl")
_COMPACTION_RE = re.compile(rf"upto-(\d{{{JOURNAL_SEGMENT_DIGITS}}}){_EPOCH_SUFFIX}\.jsonl")
_RANGE_RE = re.compile(
    rf"range-(\d{{{JOURNAL_SEGMENT_DIGITS}}})-(\d{{{JOURNAL_SEGMENT_DIGITS}}}){_EPOCH_SUFFIX}\.jsonl"
)
_MARKER_RE = re.compile(
    rf"(\d{{{JOURNAL_EPOCH_DIGITS}}})-([0-9a-f]{{{JOURNAL_TOKEN_CHARS}}})-from-(\d{{{JOURNAL_SEGMENT_DIGITS}}})\.json"
)


class JournalKey(NamedTuple):
    """What a journal key's name says.

    ``kind`` is ``"segment"`` (``number`` = its first log), ``"range"``
    (logs ``number`` to ``end - 1``), ``"compaction"`` (the older ``upto-``
    objects: ``number`` = how many logs it holds, from log 0) or ``"epoch"`` (a writer's epoch
    marker; ``number`` = the log it started writing at). ``epoch`` and ``token``
    are the writer's epoch; names without one (written before epochs existed)
    are epoch 0 with an empty token.
    """

    kind: str
    number: int
    epoch: int = 0
    token: str = ""
    end: int | None = None  # a range's end (one past its last log); None for the other kinds


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

    @property
    def journal_epochs_dir(self) -> str:
        """Where writers' epoch markers live: listed by every flush, so it stays a few objects long."""
        return f"{self.journal_dir}/epochs"

    def journal_segment(self, first_log_number: int, epoch: int = 0, token: str = "") -> str:
        """A segment is named by its first log and its writer's epoch, so a reader knows the next name.

        Epoch 0 (no token) gives the name segments had before epochs existed.
        """
        return f"{self.journal_dir}/{first_log_number:0{JOURNAL_SEGMENT_DIGITS}d}{_epoch_suffix(epoch, token)}.jsonl"

    def journal_compaction(self, log_count: int, epoch: int = 0, token: str = "") -> str:
        """Logs 0..count-1 in one object, so opening a long study reads one object, not thousands."""
        return f"{self.journal_dir}/upto-{log_count:0{JOURNAL_SEGMENT_DIGITS}d}{_epoch_suffix(epoch, token)}.jsonl"

    def journal_range(self, first: int, end: int, epoch: int, token: str) -> str:
        """Logs ``first..end-1`` in one object: a tier of compaction (see :mod:`hpo.journal._backend`)."""
        digits = JOURNAL_SEGMENT_DIGITS
        return f"{self.journal_dir}/range-{first:0{digits}d}-{end:0{digits}d}{_epoch_suffix(epoch, token)}.jsonl"

    def journal_epoch_marker(self, epoch: int, token: str, start: int) -> str:
        """The marker a writer leaves when it takes ``epoch``, having read the journal's first ``start`` logs."""
        return (
            f"{self.journal_epochs_dir}/{epoch:0{JOURNAL_EPOCH_DIGITS}d}-{token}"
            f"-from-{start:0{JOURNAL_SEGMENT_DIGITS}d}.json"
        )

    def parse_journal_key(self, key: str) -> JournalKey | None:
        """What a key under the journal folder is (segment, range, compaction, epoch marker), else None."""
        folder, _, name = key.rpartition("/")
        if folder == self.journal_epochs_dir:
            marker = _MARKER_RE.fullmatch(name)
            if marker is None:
                return None
            return JournalKey("epoch", int(marker[3]), int(marker[1]), marker[2])
        if folder != self.journal_dir:
            return None
        for kind, pattern in (("segment", _SEGMENT_RE), ("compaction", _COMPACTION_RE)):
            found = pattern.fullmatch(name)
            if found is not None:
                return JournalKey(kind, int(found[1]), int(found[2] or 0), found[3] or "")
        found = _RANGE_RE.fullmatch(name)
        if found is not None and int(found[1]) < int(found[2]):
            return JournalKey("range", int(found[1]), int(found[3] or 0), found[4] or "", int(found[2]))
        return None

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

    @property
    def jobs_dir(self) -> str:
        """Where ``hpo job``'s one-off commands keep their files, one folder per job."""
        return f"{self.root}/jobs"

    def job_dir(self, job_id: str) -> str:
        return f"{self.jobs_dir}/{job_id}"

    def job_spec(self, job_id: str) -> str:
        return f"{self.job_dir(job_id)}/job.json"

    def job_launch(self, job_id: str) -> str:
        return f"{self.job_dir(job_id)}/launch.json"

    def job_log(self, job_id: str) -> str:
        return f"{self.job_dir(job_id)}/log.txt"

    def job_status(self, job_id: str) -> str:
        return f"{self.job_dir(job_id)}/status.json"

    @property
    def controller_dir(self) -> str:
        """Where a controller running elsewhere (``hpo run --remote``) and ``hpo stop`` keep their files."""
        return f"{self.root}/controller"

    def controller_bundle(self, sha256: str) -> str:
        return f"{self.controller_dir}/bundle-{sha256}.json"

    @property
    def controller_log(self) -> str:
        return f"{self.controller_dir}/log.txt"

    @property
    def controller_restarts(self) -> str:
        return f"{self.controller_dir}/restarts.json"

    @property
    def controller_stop(self) -> str:
        return f"{self.controller_dir}/stop.json"


def _epoch_suffix(epoch: int, token: str) -> str:
    if epoch == 0 and not token:
        return ""
    if epoch <= 0 or len(token) != JOURNAL_TOKEN_CHARS:
        raise ValueError(f"bad journal epoch {epoch!r} / token {token!r}")
    return f"-e{epoch:0{JOURNAL_EPOCH_DIGITS}d}-{token}"
