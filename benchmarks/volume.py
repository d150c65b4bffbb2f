"""How fast a study opens and polls on an S3 volume (moto's server standing in for RunPod's S3 API).

Builds a study of 2,000 trials x 50 reports in the journal on an S3 bucket
(written through the controller's own journal writer, a flush every 10 trials,
compaction in tiers of 16 on), then measures:

* opening it cold (a fresh local cache: another machine) and warm (the cache
  of a previous open), with and without compaction, in seconds and S3 requests;
* the baseline: Optuna's own ``JournalFileBackend`` opening the same logs from
  a local file, in the same process;
* one controller poll cycle over 200 live event files (100 of which grew): the
  S3 volume against a directory volume on local disk.

It prints figures and asserts nothing: the machine is shared and noisy.

    python benchmarks/volume.py [--trials 2000] [--reports 50] [--live 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import optuna
from moto.server import ThreadedMotoServer
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.events import EventTail, ReportEvent, encode_event
from hpo.journal import VolumeJournalBackend
from hpo.layout import StudyLayout
from hpo.volume import DirectoryVolume, S3Volume, Volume

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("werkzeug").setLevel(logging.WARNING)


@contextmanager
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def build_logs(path: Path, trials: int, reports: int) -> list[dict[str, Any]]:
    """A real study's journal logs, made by Optuna itself into a local journal file."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="bench", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(trials):
        trial = study.ask()
        x = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        trial.suggest_int("hidden", 16, 512, step=16)
        for step in range(1, reports + 1):
            trial.report(x + 1.0 / step, step)
        study.tell(trial, x)
    return list(JournalFileBackend(str(path)).read_logs(0))


def write_journal(volume: Volume, study: str, logs: list[dict[str, Any]], per_flush: int, compact_every: int, cache: Path) -> None:
    writer = VolumeJournalBackend(volume, study, writer=True, cache_dir=cache, compact_every=compact_every)
    for start in range(0, len(logs), per_flush):
        writer.append_logs(logs[start : start + per_flush])
        writer.flush()


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def open_and_count(volume: S3Volume, study: str, cache: Path) -> tuple[float, int, int]:
    """Open the study as a reader and load every trial: seconds, S3 requests, trials."""
    volume.requests.clear()

    def load() -> int:
        backend = VolumeJournalBackend(volume, study, cache_dir=cache)
        return len(optuna.load_study(study_name="bench", storage=JournalStorage(backend)).get_trials(deepcopy=False))

    seconds, count = timed(load)
    return seconds, sum(volume.requests.values()), count


def poll_cycle(volume: Volume, live: int, grown: int) -> tuple[float, list[EventTail]]:
    """Set up ``live`` event files (with the other files a trial has), grow ``grown``, then poll once."""
    layout = StudyLayout("poll")
    tails = []
    for trial in range(live):
        volume.write_bytes(layout.spec(trial), b"{}")
        volume.write_bytes(f"{layout.checkpoint_dir(trial)}/checkpoint.npz", b"x" * 1024)
        key = layout.events(trial, 0)
        volume.write_bytes(key, b"".join(encode_event(ReportEvent(step=s, value=1.0 / s)) for s in range(1, 21)))
        tail = EventTail(volume, key)
        tail.poll()
        tails.append(tail)
    for tail in tails[:grown]:
        volume.append_bytes(tail.key, encode_event(ReportEvent(step=21, value=0.01)))
    if isinstance(volume, S3Volume):
        volume.requests.clear()

    def cycle() -> int:
        sizes = volume.sizes([t.key for t in tails])
        return sum(len(t.poll(sizes[t.key])) for t in tails)

    seconds, events = timed(cycle)
    assert events == grown, (events, grown)
    return seconds, tails


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--live", type=int, default=200, help="live event files in the poll cycle")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hpo-bench-volume-") as tmp, moto_endpoint() as endpoint:
        work = Path(tmp)
        admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                             aws_access_key_id="bench", aws_secret_access_key="bench")
        admin.create_bucket(Bucket="benchvolume")
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        volume = S3Volume("benchvolume", endpoint_url=endpoint, region="EU-RO-1")

        print(f"building {args.trials} trials x {args.reports} reports ...", file=sys.stderr)
        logs = build_logs(work / "optuna.journal", args.trials, args.reports)
        per_flush = max(1, len(logs) // (args.trials // 10 or 1))  # one flush per ~10 trials, as a controller would
        write_journal(volume, "bench", logs, per_flush, compact_every=16, cache=work / "writer")
        write_journal(volume, "bench-nocompact", logs, per_flush, compact_every=10**9, cache=work / "writer2")
        listing = volume.list("hpo/bench/journal/")
        segments = sum(
            1 for info in listing if "upto-" not in info.key and "range-" not in info.key and "/epochs/" not in info.key
        )
        print(f"{len(logs)} journal logs in {segments} segments of ~{per_flush} logs")

        base_s, trials = timed(lambda: len(optuna.load_study(
            study_name="bench", storage=JournalStorage(JournalFileBackend(str(work / "optuna.journal")))
        ).get_trials(deepcopy=False)))
        assert trials == args.trials
        rows = [("JournalFileBackend, local disk (baseline)", base_s, 0, trials)]
        cold = open_and_count(volume, "bench", work / "cold")
        rows.append(("S3 volume, cold cache, compacted", *cold))
        warm = open_and_count(volume, "bench", work / "cold")
        rows.append(("S3 volume, warm cache", *warm))
        raw = open_and_count(volume, "bench-nocompact", work / "cold-nocompact")
        rows.append(("S3 volume, cold cache, no compaction", *raw))

        print(f"\nopening a study of {args.trials} trials x {args.reports} reports")
        print(f"{'':44} {'seconds':>8} {'x baseline':>10} {'S3 requests':>12} {'trials':>7}")
        for label, seconds, requests, count in rows:
            print(f"{label:44} {seconds:8.2f} {seconds / base_s:10.2f} {requests:12d} {count:7d}")

        s3_s, _ = poll_cycle(volume, args.live, args.live // 2)
        s3_requests = dict(volume.requests)
        local_s, _ = poll_cycle(DirectoryVolume(work / "local-volume"), args.live, args.live // 2)
        print(f"\none poll cycle over {args.live} live event files, {args.live // 2} of them grown")
        print(f"{'S3 volume':44} {s3_s:8.3f} s  requests: {s3_requests}")
        print(f"{'directory volume, local disk (baseline)':44} {local_s:8.3f} s  ratio S3/local {s3_s / local_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
