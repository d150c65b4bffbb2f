"""What a controller poll costs on an S3 volume, counted in requests (issue 16).

A poll must cost what changed, not what happened before: one listing for the
live attempts' event files whatever the study's history, one ranged GET per
file that grew (in flight side by side), the journal's segment and fence
when the study changed, and the lease only every third of its TTL. Each test
reproduces one of the measured findings and counts requests through botocore's
event hooks on the controller's own client, or on the wire through a proxy;
none times anything.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from controller_harness import Seam
from s3_server import CREDENTIALS_ENV, FaultProxy, ProxyRequest, Reply, admin_client, make_bucket

from hpo.events import EventTail, ReportEvent, encode_event
from hpo.layout import StudyLayout
from hpo.volume import S3Volume
from hpo.volume._s3 import MIN_LISTED

LAYOUT = StudyLayout("seam")


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(moto_s3: str) -> str:
    return make_bucket(moto_s3)


class Requests:
    """Every S3 operation a volume's client issues, with the key or prefix it names, and the objects listings return."""

    def __init__(self, volume: S3Volume) -> None:
        self.calls: list[tuple[str, str]] = []
        self.listed = 0
        events = volume._client.meta.events
        events.register("before-parameter-build.s3.*", self._before)  # the API call's own parameters
        events.register("after-call.s3.ListObjectsV2", self._after_listing)

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, str(params.get("Key") or params.get("Prefix") or "")))

    def _after_listing(self, parsed: dict[str, Any], **_: Any) -> None:
        self.listed += len(parsed.get("Contents", ()))

    def take(self) -> Counter[str]:
        """What was issued since the last take, by kind: what each request of a poll is for."""
        kinds: Counter[str] = Counter()
        for operation, key in self.calls:
            kinds[_kind(operation, key)] += 1
        self.calls.clear()
        self.listed = 0
        return kinds


def _kind(operation: str, key: str) -> str:
    if key == LAYOUT.lease:
        return f"lease {operation}"
    if operation == "ListObjectsV2" and key.startswith(LAYOUT.journal_epochs_dir):
        return "journal fence listing"
    if operation == "PutObject" and key.startswith(LAYOUT.journal_dir + "/range-"):
        return "journal compaction"
    if operation == "PutObject" and key.startswith(LAYOUT.journal_dir + "/"):
        return "journal segment"
    if operation == "ListObjectsV2" and key.startswith(LAYOUT.trials_dir):
        return "event files listing"
    if operation == "GetObject" and key.endswith("/events.jsonl"):
        return "event file read"
    return f"{operation} {key}"


def _s3_seam(root: Path, moto_s3: str, bucket: str, trials: int) -> tuple[Seam, S3Volume]:
    """A seam whose controller's volume is S3; the workers write through a client of their own (not counted)."""
    seam = Seam(root, trials=trials, concurrency=trials, max_step=1000)
    seam.volume = S3Volume(bucket, endpoint_url=moto_s3, region="EU-RO-1")
    seam.controller = seam.new_controller()
    return seam, S3Volume(bucket, endpoint_url=moto_s3, region="EU-RO-1")


def _report(worker: S3Volume, trial: int, step: int) -> None:
    worker.append_bytes(LAYOUT.events(trial, 0), encode_event(ReportEvent(step=step, value=1.0 / step)))


def test_a_poll_of_3_live_trials_costs_one_listing_and_one_get_per_grown_file(
    tmp_path: Path, moto_s3: str, bucket: str
) -> None:
    """Measured before: 8 requests a poll (lease GET and PUT, listing, 3 GETs, segment PUT, fence listing)."""
    seam, worker = _s3_seam(tmp_path, moto_s3, bucket, trials=3)
    controller = seam.controller
    requests = Requests(seam.volume)
    controller.begin()
    controller.cycle()  # launches the 3 trials
    assert len(controller.runs) == 3
    requests.take()
    polls, renewals, compactions = 40, Counter[str](), 0
    for step in range(1, polls + 1):
        seam.clock.sleep(seam.config.poll_interval)
        for trial in range(3):
            _report(worker, trial, step)
        controller.cycle()
        kinds = requests.take()
        renewals.update({kind: kinds.pop(kind) for kind in list(kinds) if kind.startswith("lease")})
        compactions += kinds.pop("journal compaction", 0)
        # What the README promises: one listing, one GET per grown file; the journal's new segment and its fence.
        assert kinds == {"event files listing": 1, "event file read": 3, "journal segment": 1, "journal fence listing": 1}
    assert [t.intermediate_values for t in seam.study().trials] == [{s: 1.0 / s for s in range(1, polls + 1)}] * 3
    # The lease (60 s) is renewed every 20 s, by polls 1 s apart: twice in 40 polls, a GET and a PUT each.
    assert renewals == {"lease GetObject": 2, "lease PutObject": 2}
    # Every 16th segment is merged with the 15 before it into one range object (tiered compaction): the
    # flushes before the polls (begin, the launching cycle) count towards the first one.
    assert compactions in (polls // 16, polls // 16 + 1)

    seam.clock.sleep(seam.config.poll_interval)
    controller.cycle()  # a quiet poll: nothing grew
    assert requests.take() == {"event files listing": 1, "journal fence listing": 1}


def _put_all(admin: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: admin.put_object(Bucket=bucket, Key=key, Body=b"{}"), keys))


@pytest.mark.parametrize(
    ("live", "listings"),
    [
        pytest.param([(97, 0), (98, 0), (99, 0)], 1, id="the newest trials"),
        # Sorted as text, 100 comes before 98: the keys span the history; a second listing jumps the gap.
        pytest.param([(98, 0), (99, 0), (100, 0), (101, 0)], 2, id="across a power of ten"),
        pytest.param([(5, 2), (100, 0), (101, 0), (102, 0)], 2, id="and an old trial resumed"),
    ],
)
def test_a_poll_lists_the_live_attempts_not_the_history_around_them(
    moto_s3: str, bucket: str, live: list[tuple[int, int]], listings: int
) -> None:
    """Measured before: the listing walked every finished trial under the live keys' common prefix (12 pages at 2,000)."""
    admin = admin_client(moto_s3)
    volume = S3Volume(bucket, endpoint_url=moto_s3)
    requests = Requests(volume)
    keys = [LAYOUT.events(trial, attempt) for trial, attempt in live]
    for trial, attempt in live:
        _put_all(admin, bucket, [LAYOUT.spec(trial), LAYOUT.launch(trial, attempt), LAYOUT.log(trial, attempt)])
    _put_all(admin, bucket, keys)
    finished = [n for n in range(100) if n not in {trial for trial, _ in live}]

    def history(tag: str, per_trial: int) -> list[str]:
        return [f"{LAYOUT.checkpoint_dir(n)}/{tag}-{i}.npz" for n in finished for i in range(per_trial)]

    figures = []
    for files in ([LAYOUT.spec(n) for n in finished] + history("a", 2), history("b", 3)):  # ~300, then ~300 more
        _put_all(admin, bucket, files)
        requests.take()
        assert volume.sizes(keys) == dict.fromkeys(keys, 2)
        figures.append((len(requests.calls), requests.listed))
    assert len(volume.list(LAYOUT.trials_dir)) > 550  # what a listing of the common prefix walks (and more each trial)
    assert figures[0] == figures[1]  # the same requests, the same objects listed, at either history
    requests_per_poll, listed = figures[0]
    assert requests_per_poll == listings
    assert listed <= MIN_LISTED * listings  # the live trials' folders, and at most a short page's reach past them


def test_grown_event_files_are_read_side_by_side(bucket: str, moto_s3: str) -> None:
    """Measured before: 100 grown files, 100 GETs one after another (seconds at RunPod's latency)."""
    in_flight, peak, gave_up = 0, 0, False
    enough = threading.Condition()

    def hold_reads(request: ProxyRequest) -> Reply | None:
        # Each read of an event file waits here until 8 are in flight: one after another, they never would be.
        nonlocal in_flight, peak, gave_up
        if request.method != "GET" or not request.path.endswith("/events.jsonl"):
            return None
        with enough:
            in_flight += 1
            peak = max(peak, in_flight)
            enough.notify_all()
            if not gave_up and not enough.wait_for(lambda: peak >= 8, timeout=30):
                gave_up = True
            in_flight -= 1
        return None

    keys = [LAYOUT.events(n, 0) for n in range(20)]
    admin = admin_client(moto_s3)
    for key in keys:
        admin.put_object(Bucket=bucket, Key=key, Body=json.dumps({"type": "report", "step": 1, "value": 0.5}).encode() + b"\n")
    with FaultProxy(moto_s3) as proxy:
        volume = S3Volume(bucket, endpoint_url=proxy.url)
        tails = [EventTail(volume, key) for key in keys]
        proxy.rule = hold_reads
        polled = EventTail.poll_many(tails, volume.sizes(keys))
    assert [[e.step for e in events] for events in polled] == [[1]] * 20
    assert volume.requests == {"ListObjectsV2": 1, "GetObject": 20}
    assert peak >= 8 and not gave_up


def test_the_client_keeps_a_connection_for_every_read_in_flight(bucket: str, moto_s3: str) -> None:
    """16 reads at once on a pool of 10 connections would open (and drop) a new one per extra read: a round trip more."""
    volume = S3Volume(bucket, endpoint_url=moto_s3)
    assert volume._client.meta.config.max_pool_connections >= volume.read_concurrency
