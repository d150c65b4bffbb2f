"""What one controller poll costs on an S3 volume 50 ms away: requests, listing pages, seconds.

moto's S3 server (in a process of its own) stands in for RunPod's S3 API, behind a proxy that adds
``--delay`` seconds to every request (:mod:`_latency_proxy`), so sequential
requests cost what they would over the network. Each history (finished
trials before the live ones, every trial with the files a real one has: spec,
launch record, events, log, checkpoint) is measured three ways:

* **sizes**: the listing alone, for 3 and ``--live`` live trials: the old
  listing of the live keys' common prefix, a HEAD of every live key (16 at a
  time), and the volume's ``sizes()`` (range listings from the live keys);
* **poll**: the listing plus reading every grown event file, ``before`` (the
  common prefix listing, then one ranged GET after another, as the
  controller did) and ``after`` (``sizes()`` then :meth:`hpo.events.EventTail.poll_many`);
* **controller**: requests per poll of a real :class:`~hpo.controller.Controller`
  driving 3 live trials that each report every poll, at RunPod's 15 s poll
  interval on a fake clock (lease renewals, journal flushes included). This one
  has no ``before`` to select: the code before issue 16 made it 8.00 (a GET and
  a PUT of the lease every poll, the listing, 3 GETs, the segment, the fence).

It prints figures (and ratios after / before within the same run); it asserts
only that every poll read the events it should have.

    python benchmarks/s3_poll.py [--delay 0.05] [--live 200] [--grown 100] [--histories 0 1900 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import optuna

sys.path.insert(0, str(Path(__file__).parent))  # _latency_proxy beside this file (benchmarks/ is no package)
from _latency_proxy import LatencyProxy

from hpo.backends import AttemptRef, Backend, WorkerHandle
from hpo.config import load_study
from hpo.controller import Controller, ProgressSink
from hpo.events import EventTail, ReportEvent, encode_event
from hpo.journal import open_storage
from hpo.layout import StudyLayout
from hpo.lease import Lease
from hpo.volume import S3Volume

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("werkzeug").setLevel(logging.WARNING)

STUDY = "poll"
LAYOUT = StudyLayout(STUDY)
ROUNDS = 3  # polls measured per figure (the median is printed)


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server in a process of its own: the server's CPU is not the client's, as with RunPod."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def report_lines(first: int, last: int) -> bytes:
    return b"".join(encode_event(ReportEvent(step=s, value=1.0 / s)) for s in range(first, last + 1))


def populate(admin: Any, bucket: str, trials: int) -> None:
    """``trials`` trial folders as a study leaves them: spec, launch record, events, log, checkpoint."""
    def trial(n: int) -> None:
        files = {
            LAYOUT.spec(n): b"{}",
            LAYOUT.launch(n, 0): b'{"pid": 1}',
            LAYOUT.events(n, 0): report_lines(1, 20),
            LAYOUT.log(n, 0): b"epoch 1\n" * 20,
            f"{LAYOUT.checkpoint_dir(n)}/checkpoint.npz": b"x" * 512,
        }
        for key, body in files.items():
            admin.put_object(Bucket=bucket, Key=key, Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(trial, range(trials)))


def grow(admin: Any, bucket: str, keys: list[str], step: int) -> None:
    """Append one report to each event file, as its worker would (directly on moto: not counted)."""
    def one(key: str) -> None:
        old = admin.get_object(Bucket=bucket, Key=key)["Body"].read()
        admin.put_object(Bucket=bucket, Key=key, Body=old + report_lines(step, step))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, keys))


def old_sizes(volume: S3Volume, keys: list[str]) -> dict[str, int | None]:
    """The listing before issue 16: every object under the live keys' common prefix, page after page."""
    common = os.path.commonprefix(keys)
    found = {info.key: info.size for info in volume._scan(common, key_for_errors=common)}
    return {key: found.get(key) for key in keys}


def head_sizes(volume: S3Volume, keys: list[str]) -> dict[str, int | None]:
    """The alternative: one HEAD per live key, 16 in flight."""
    with ThreadPoolExecutor(16) as pool:
        return dict(zip(keys, pool.map(volume.size, keys), strict=True))


def measure(proxy: LatencyProxy, action: Callable[[], Any]) -> tuple[float, int, int, Any]:
    """Seconds, requests, listing pages of one ``action``, counted on the wire."""
    proxy.reset()
    began = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - began
    return seconds, proxy.total(), proxy.counts["ListObjectsV2"], result


def poll_figures(
    proxy: LatencyProxy, admin: Any, bucket: str, keys: list[str], grown: int, how: str
) -> tuple[float, int, int]:
    """The median seconds, requests and pages of a poll (``before`` or ``after``) over ``keys``, ``grown`` of them grown."""
    volume = S3Volume(bucket, endpoint_url=proxy.url, region="EU-RO-1")
    tails = []
    for key in keys:
        tail = EventTail(volume, key)
        tail.offset = admin.head_object(Bucket=bucket, Key=key)["ContentLength"]  # read up to here by earlier polls
        tails.append(tail)
    rows = []
    for round_ in range(ROUNDS):
        grow(admin, bucket, keys[:grown], 100 + round_)

        def poll() -> int:
            if how == "before":
                sizes = old_sizes(volume, keys)
                return sum(len(tail.poll(sizes.get(tail.key))) for tail in tails)
            sizes = volume.sizes(keys)
            return sum(len(events) for events in EventTail.poll_many(tails, sizes))

        seconds, requests, pages, events = measure(proxy, poll)
        assert events == grown, (how, events, grown)
        rows.append((seconds, requests, pages))
    # Files not grown this round keep their offsets; those grown were read up to their end.
    return statistics.median(r[0] for r in rows), rows[-1][1], rows[-1][2]


# -- a real controller over 3 live trials ---------------------------------------------------

STUDIES_YAML = """
studies:
  poll:
    objective: steady
    search_space:
      x: {type: float, low: 0.0, high: 1.0}
    sampler: {type: random, seed: 1}
    pruner: {type: none}
    fidelity: {max_step: 1000}
    budget: {trials: 3, concurrency: 3, max_attempts: 1}
    volume: {path: storage}
    poll_interval: 15
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Workers(Backend):
    """Workers that live until the benchmark ends: launching and listing cost no request of the volume."""

    name = "bench"

    def __init__(self) -> None:
        self.alive: dict[AttemptRef, WorkerHandle] = {}

    def launch(self, ref: AttemptRef) -> WorkerHandle:
        self.alive[ref] = WorkerHandle(ref, f"w{ref.trial}")
        return self.alive[ref]

    def list_live(self) -> dict[AttemptRef, WorkerHandle]:
        return dict(self.alive)

    def terminate(self, handle: WorkerHandle) -> None:
        self.alive.pop(handle.ref, None)


def controller_figures(proxy: LatencyProxy, admin: Any, bucket: str, work: Path, polls: int) -> tuple[float, dict[str, float]]:
    """Requests per poll (mean over ``polls``, and by operation) of a controller whose 3 trials report every poll."""
    (work / "storage").mkdir(parents=True, exist_ok=True)
    (work / "studies.yaml").write_text(STUDIES_YAML)
    config = load_study(work / "studies.yaml", STUDY)
    clock = FakeClock()
    volume = S3Volume(bucket, endpoint_url=proxy.url, region="EU-RO-1")
    controller = Controller(
        config,
        volume=volume,
        storage=open_storage(volume, STUDY, writer=True, cache_dir=work / "cache"),
        backend=Workers(),
        lease=Lease(volume, STUDY, ttl=max(60.0, 4 * config.poll_interval), clock=clock, sleep=clock.sleep, settle=0.0),
        code_sha=None,
        progress=ProgressSink(),
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock,
        dashboard_plot=False,
    )
    controller.begin()
    controller.cycle()  # launches the 3 trials
    keys = [LAYOUT.events(n, 0) for n in range(3)]
    for key in keys:
        admin.put_object(Bucket=bucket, Key=key, Body=b"")
    controller.cycle()
    volume.requests.clear()
    proxy.reset()
    for step in range(1, polls + 1):
        clock.sleep(config.poll_interval)
        grow(admin, bucket, keys, step)
        controller.cycle()
    counts = {name: count / polls for name, count in sorted(volume.requests.items())}
    return sum(volume.requests.values()) / polls, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each request waits in the proxy")
    parser.add_argument("--live", type=int, default=200)
    parser.add_argument("--grown", type=int, default=100)
    # 1900: the live trials 1900-2099 share only "trials/" (the case measured in issue 16); 2000: 2000-2199 share "2".
    parser.add_argument("--histories", type=int, nargs="+", default=[0, 1900, 2000])
    parser.add_argument("--controller-polls", type=int, default=12)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")

    with tempfile.TemporaryDirectory(prefix="hpo-bench-s3-poll-") as tmp, moto_endpoint() as endpoint:
        admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        with LatencyProxy(endpoint, args.delay) as proxy:
            print(f"every request waits {args.delay * 1000:.0f} ms in the proxy; figures are medians of {ROUNDS} polls\n")
            for history in args.histories:
                bucket = f"hist{history}"
                admin.create_bucket(Bucket=bucket)
                print(f"building {history} finished + {args.live} live trials ...", file=sys.stderr)
                populate(admin, bucket, history + args.live)
                live = [LAYOUT.events(n, 0) for n in range(history, history + args.live)]
                print(f"history {history} finished trials ({(history + args.live) * 5} objects under trials/)")
                volume = S3Volume(bucket, endpoint_url=proxy.url, region="EU-RO-1")
                for keys in (live[-3:], live):
                    for label, sizes in (("common prefix listing (before)", old_sizes),
                                         ("HEAD each live key, 16 at a time", head_sizes),
                                         ("sizes(): range listings (after)", S3Volume.sizes)):
                        seconds, requests, pages, _ = measure(proxy, lambda: sizes(volume, keys))  # noqa: B023
                        print(f"  sizes, {len(keys):3d} live  {label:34} {requests:4d} requests {pages:3d} pages {seconds:6.3f} s")
                for keys, grown in ((live[-3:], 3), (live, args.grown)):
                    figures = {how: poll_figures(proxy, admin, bucket, keys, grown, how) for how in ("before", "after")}
                    for how, (seconds, requests, pages) in figures.items():
                        print(f"  poll,  {len(keys):3d} live, {grown:3d} grown, {how:6}  "
                              f"{requests:4d} requests {pages:3d} pages {seconds:6.3f} s")
                    print(f"  poll,  {len(keys):3d} live: after / before = {figures['after'][0] / figures['before'][0]:.2f} in seconds, "
                          f"{figures['after'][1] / figures['before'][1]:.2f} in requests")
                print()
            admin.create_bucket(Bucket="controller")
            per_poll, by_operation = controller_figures(proxy, admin, "controller", Path(tmp), args.controller_polls)
            detail = ", ".join(f"{name} {count:.2f}" for name, count in by_operation.items())
            print(f"controller, 3 live trials each reporting every poll (15 s apart): {per_poll:.2f} requests per poll ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
