"""What the volume journal costs as a study grows: bytes written, objects read on a cold open, memory.

Builds a study of 2,000 trials x 50 reports with Optuna itself, then:

* writes its logs through the controller's journal writer onto a directory
  volume wrapped to count every byte written, flushing every ``--per-flush``
  logs (the controller flushes every poll: with 200 live trials, a few dozen
  logs each), and prints the journal bytes written (segments, compactions,
  markers) over the journal's size;
* opens it cold (an empty cache, another machine) and counts the objects read;
* measures the peak RSS (``VmHWM``, see :func:`peak_rss_kib`) of opening the study, each in a fresh
  subprocess that imports the same modules: Optuna's ``JournalFileBackend`` on
  a local file against the volume journal, cold and warm.

It prints figures and asserts nothing.

    python benchmarks/journal_growth.py [--trials 2000] [--reports 50] [--per-flush 40]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hpo.journal import VolumeJournalBackend
from hpo.volume import DirectoryVolume

optuna.logging.set_verbosity(optuna.logging.WARNING)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from volume import build_logs  # noqa: E402  (the same study as benchmarks/volume.py)


class CountingVolume(DirectoryVolume):
    """A directory volume that counts the bytes written under a prefix, and the objects read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written: dict[str, int] = {}
        self.reads = 0

    def write_bytes(self, key: str, data: bytes) -> None:
        kind = key.rsplit("/", 1)[-1].split("-", 1)[0] if "/epochs/" not in key else "marker"
        kind = kind if kind in ("range", "upto", "marker") else "segment"
        self.written[kind] = self.written.get(kind, 0) + len(data)
        super().write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        self.reads += 1
        return super().read_bytes(key)


def child(mode: str, journal: str, volume_root: str, cache: str) -> None:
    """Open the study one way and print the peak RSS in KiB (run in a fresh process)."""
    began = time.perf_counter()
    if mode == "file":
        storage = JournalStorage(JournalFileBackend(journal))
    else:
        storage = JournalStorage(VolumeJournalBackend(DirectoryVolume(Path(volume_root)), "bench", cache_dir=Path(cache)))
    trials = len(optuna.load_study(study_name="bench", storage=storage).get_trials(deepcopy=False))
    seconds = time.perf_counter() - began
    print(json.dumps({"rss_kib": peak_rss_kib(), "trials": trials, "s": seconds}))


def peak_rss_kib() -> int:
    """This process's peak resident set (``VmHWM``), in KiB.

    Not ``ru_maxrss``: Linux carries it across ``execve``, so a child started
    from this (large) benchmark process would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(mode: str, journal: Path, volume_root: Path, cache: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(journal), str(volume_root), str(cache)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--per-flush", type=int, default=40, help="logs per flush (one flush per poll)")
    parser.add_argument("--journal", type=Path, help="reuse this Optuna journal file of study 'bench'")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    with tempfile.TemporaryDirectory(prefix="hpo-bench-growth-") as tmp:
        work = Path(tmp)
        journal = args.journal or work / "optuna.journal"
        if args.journal is None:
            print(f"building {args.trials} trials x {args.reports} reports ...", file=sys.stderr)
            build_logs(journal, args.trials, args.reports)
        logs = list(JournalFileBackend(str(journal)).read_logs(0))
        volume = CountingVolume(work / "volume")
        writer = VolumeJournalBackend(volume, "bench", writer=True, cache_dir=work / "writer")
        began = time.process_time()
        for start in range(0, len(logs), args.per_flush):
            writer.append_logs(logs[start : start + args.per_flush])
            writer.flush()
        cpu = time.process_time() - began
        size = journal.stat().st_size
        total = sum(volume.written.values())
        flushes = -(-len(logs) // args.per_flush)
        print(f"{len(logs)} logs, {size / 1e6:.1f} MB, {flushes} flushes of {args.per_flush} logs")
        print(f"journal bytes written: {total / 1e6:.1f} MB = {total / size:.2f}x the journal "
              f"({', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sorted(volume.written.items()))}); "
              f"writer CPU {cpu:.1f} s")
        volume.reads = 0
        VolumeJournalBackend(volume, "bench", cache_dir=work / "cold-count")
        print(f"cold open: {volume.reads} objects read")
        del logs, writer

        base = measure("file", journal, work / "volume", work / "unused")
        cold = measure("volume", journal, work / "volume", work / "rss-cache")
        warm = measure("volume", journal, work / "volume", work / "rss-cache")
        print("\npeak RSS of opening the study (fresh process each, same imports)")
        for label, row in (("JournalFileBackend, local file", base), ("volume journal, cold", cold), ("volume journal, warm", warm)):
            print(f"{label:34} {row['rss_kib'] / 1024:7.1f} MiB {row['rss_kib'] / base['rss_kib']:6.2f}x  "
                  f"({row['s']:.2f} s, {row['trials']} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
