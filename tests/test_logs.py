"""``hpo logs``: an attempt's log printed and followed from the volume, a folder or S3 (moto).

The follow loop runs in a thread with its sleep injected (a short real pause:
the test waits on what the follower printed, never for a duration), while the
test appends to the log and the event file as an attempt would.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hooked_volume import HookedVolume
from s3_server import CREDENTIALS_ENV, make_bucket
from studyfiles import hpo_in_process, make_workspace, study_config, study_volume, wait_for

from hpo.cli import _logs
from hpo.errors import HpoError
from hpo.events import DoneEvent, PrunedEvent, ReportEvent, StartEvent, encode_event
from hpo.layout import StudyLayout
from hpo.volume import Volume

LAYOUT = StudyLayout("steady")
DEADLINE = 60.0  # generous: the machine may be loaded; a passing test never waits this long


class RecordingVolume(HookedVolume):
    """Delegates to a real volume and records every read: how the log is read, ranges or whole files."""

    def __init__(self, inner: Volume) -> None:
        super().__init__(inner)
        self.ranges: list[tuple[str, int, int]] = []  # (key, offset, bytes returned)
        self.whole_reads: list[str] = []

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.inner.read_range(key, offset, length)
        self.ranges.append((key, offset, len(data)))
        return data

    def read_bytes(self, key: str) -> bytes:
        self.whole_reads.append(key)
        return super().read_bytes(key)

    def read_from(self, key: str, offset: int) -> bytes:
        self.whole_reads.append(key)
        return super().read_from(key, offset)


class Follower:
    """``print_log(..., follow=True)`` in a thread, collecting what it writes."""

    def __init__(self, volume: Volume, trial: int = 0, attempt: int = 0) -> None:
        self.chunks: list[str] = []
        self.sleeps = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(volume, trial, attempt), daemon=True)
        self._thread.start()

    def _write(self, text: str) -> None:
        with self._lock:
            self.chunks.append(text)

    def _sleep(self, seconds: float) -> None:
        self.sleeps += 1
        time.sleep(0.01)  # a real pause, only so the loop does not spin a core

    def _run(self, volume: Volume, trial: int, attempt: int) -> None:
        try:
            _logs.print_log(volume, LAYOUT, trial, attempt, self._write, follow=True, sleep=self._sleep, interval=5.0)
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails with it
            self.error = exc

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self.chunks)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        wait_for(lambda: not self.running, DEADLINE, "the follower to stop")
        if self.error is not None:
            raise self.error


def _event(volume: Volume, event: object, trial: int = 0, attempt: int = 0) -> None:
    volume.append_bytes(LAYOUT.events(trial, attempt), encode_event(event))  # type: ignore[arg-type]


def test_follow_prints_what_is_appended_and_stops_at_the_final_event(volume: Volume) -> None:
    log = LAYOUT.log(0, 0)
    volume.append_bytes(log, b"loading data\n")
    _event(volume, StartEvent(pid=1, host="pod"))
    follower = Follower(volume)
    wait_for(lambda: follower.text == "loading data\n", DEADLINE, "the log's first line")

    volume.append_bytes(log, b"epoch 1: val_loss 0.5\n")
    _event(volume, ReportEvent(step=1, value=0.5))
    wait_for(lambda: follower.text.endswith("epoch 1: val_loss 0.5\n"), DEADLINE, "the appended line")
    polls = follower.sleeps
    wait_for(lambda: follower.sleeps > polls + 2, DEADLINE, "a few more polls")
    assert follower.running  # a report is no end: it keeps following

    volume.append_bytes(log, "done: ✓\n".encode())  # what the attempt logs before its final event
    _event(volume, DoneEvent(value=0.4))
    follower.join()
    assert follower.text == "loading data\nepoch 1: val_loss 0.5\ndone: ✓\n"


def test_follow_reads_only_the_new_bytes_by_ranges(volume: Volume, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_logs, "CHUNK", 4)  # small chunks: one poll takes several ranged reads
    recording = RecordingVolume(volume)
    log = LAYOUT.log(0, 0)
    text = "naïve café\n"  # multi-byte characters split between chunks come out whole
    volume.append_bytes(log, text.encode())
    follower = Follower(recording)
    wait_for(lambda: follower.text == text, DEADLINE, "the first bytes")
    volume.append_bytes(log, "ü\n".encode())
    wait_for(lambda: follower.text == text + "ü\n", DEADLINE, "the appended bytes")
    _event(volume, PrunedEvent(step=3))
    follower.join()

    assert recording.whole_reads == []  # no whole-file reads of the log or the events
    log_reads = [(offset, got) for key, offset, got in recording.ranges if key == log]
    assert all(got <= 4 for _, got in log_reads)
    # Each read starts where the last one ended: nothing is read twice.
    ends = [offset + got for offset, got in log_reads]
    assert [offset for offset, _ in log_reads] == [0, *ends[:-1]]
    assert ends[-1] == len((text + "ü\n").encode())


def test_follow_stops_once_a_later_attempt_has_begun(volume: Volume) -> None:
    """A worker killed outright writes no final event; the trial's next attempt says it is over."""
    volume.append_bytes(LAYOUT.log(2, 0), b"step 1\n")
    follower = Follower(volume, trial=2, attempt=0)
    wait_for(lambda: follower.text == "step 1\n", DEADLINE, "the log")
    volume.write_json(LAYOUT.launch(2, 1), {"backend": "local", "pid": 2})
    follower.join()


def test_without_follow_it_prints_the_log_once(volume: Volume) -> None:
    volume.append_bytes(LAYOUT.log(0, 0), b"a\nb\xff\n")  # a bad byte is shown, not an error
    out: list[str] = []
    _logs.print_log(volume, LAYOUT, 0, 0, out.append)
    assert "".join(out) == "a\nb\ufffd\n"


def test_the_attempt_is_the_latest_with_a_log_unless_named(volume: Volume) -> None:
    volume.write_json(LAYOUT.spec(4), {})
    with pytest.raises(HpoError, match=r"^study 'steady': trial 4: no log yet"):
        _logs.pick_attempt(volume, LAYOUT, 4, None)
    for attempt in (0, 1):
        volume.append_bytes(LAYOUT.log(4, attempt), b"x\n")
    volume.write_json(LAYOUT.launch(4, 2), {})  # launched, no log yet
    assert _logs.pick_attempt(volume, LAYOUT, 4, None) == 1
    assert _logs.pick_attempt(volume, LAYOUT, 4, 0) == 0
    with pytest.raises(HpoError, match=r"trial 4: attempt 2 has no log yet \(attempts with a log: 0, 1\)"):
        _logs.pick_attempt(volume, LAYOUT, 4, 2)
    with pytest.raises(HpoError, match=r"trial 9: no such trial on "):
        _logs.pick_attempt(volume, LAYOUT, 9, None)


# -- the command ----------------------------------------------------------------------------


def _folder_study(tmp_path: Path) -> tuple[Path, Volume]:
    studies = make_workspace(tmp_path)
    return studies, study_volume(study_config(studies, "steady"))


def _s3_study(tmp_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Volume]:
    for name, value in CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)
    studies = make_workspace(tmp_path)
    volume_line = f'volume: {{id: {make_bucket(endpoint)}, data_center: EU-RO-1, endpoint: "{endpoint}"}}'
    steady = studies.read_text().split("  steady:")[1]
    studies.write_text("studies:\n  steady:" + steady.replace("volume: {path: storage}", volume_line, 1))
    volume = study_volume(study_config(studies, "steady"))
    assert volume.url.startswith("s3://")
    return studies, volume


@pytest.fixture(params=["folder", "s3"])
def study(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Volume]:
    """The steady study's studies.yaml and its volume: a folder, or a bucket on moto's S3 server."""
    if request.param == "folder":
        return _folder_study(tmp_path)
    return _s3_study(tmp_path, request.getfixturevalue("moto_s3"), monkeypatch)


def test_logs_prints_the_latest_attempt_or_the_one_named(study: tuple[Path, Volume], tmp_path: Path) -> None:
    studies, volume = study
    volume.write_json(LAYOUT.spec(3), {})
    volume.append_bytes(LAYOUT.log(3, 0), b"first attempt\n")
    volume.append_bytes(LAYOUT.log(3, 1), b"second attempt\n")
    env = {"HPO_CACHE_DIR": str(tmp_path / "cache")}
    latest = hpo_in_process("logs", "--study", "steady", "--studies", str(studies), "--trial", "3", env=env)
    assert (latest.returncode, latest.stdout, latest.stderr) == (0, "second attempt\n", "")
    named = hpo_in_process("logs", "--study", "steady", "--studies", str(studies), "--trial", "3", "--attempt", "0", env=env)
    assert (named.returncode, named.stdout) == (0, "first attempt\n")

    _event(volume, DoneEvent(value=1.0), trial=3, attempt=1)  # ended: -f prints it all and returns
    followed = hpo_in_process("logs", "--study", "steady", "--studies", str(studies), "--trial", "3", "-f", env=env)
    assert (followed.returncode, followed.stdout) == (0, "second attempt\n")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--study", "stedy", "--trial", "0"], 2, "unknown study 'stedy'; did you mean 'steady'?"),
        (["--study", "steady", "--trial", "7"], 1, "hpo: error: study 'steady': trial 7: no such trial on file://"),
        (["--study", "steady", "--trial", "0"], 1, "hpo: error: study 'steady': trial 0: no log yet"),
        (["--study", "steady", "--trial", "0", "--attempt", "1"], 1, "trial 0: attempt 1 has no log yet"),
        (["--study", "steady", "--trial", "-1"], 2, "argument --trial: must be a number, 0 or more (got '-1')"),
    ],
)
def test_logs_errors_are_one_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    studies, volume = _folder_study(tmp_path)
    volume.write_json(LAYOUT.spec(0), {})
    result = hpo_in_process("logs", "--studies", str(studies), *args)
    assert result.returncode == code and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 or (code == 2 and lines[0].startswith("usage:")), result.stderr  # argparse adds its usage
