"""What pruning saves: the demo study run with its pruner and with NopPruner, same sampler seed.

Prints, for each run, the CPU-seconds its trial processes spent (measured by
the kernel for this process's reaped children: every attempt, pruned ones
included), the wall time, the trial counts and the best value found, then the
ratio of CPU-seconds. It asserts nothing: these machines are shared and noisy,
so read the figures, and run it twice if they look odd.

    python benchmarks/pruning.py [--trials 24] [--concurrency 3] [--studies studies.yaml] [--study demo]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hpo.config import load_study
from hpo.controller import build_controller

REPO = Path(__file__).resolve().parent.parent


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_variant(base: dict, name: str, pruner: dict, work: Path, trials: int, concurrency: int) -> dict:
    """Run one copy of the study in its own workspace and measure it."""
    project = work / name
    shutil.copytree(REPO / "objectives", project / "objectives", ignore=shutil.ignore_patterns("__pycache__"))
    study = dict(base, pruner=pruner, volume={"path": "storage"})
    study["budget"] = dict(study["budget"], trials=trials, concurrency=concurrency)
    (project / "studies.yaml").write_text(yaml.safe_dump({"studies": {name: study}}))
    config = load_study(project / "studies.yaml", name)
    controller = build_controller(config, cache_dir=work / "cache")
    cpu_before, wall_before = children_cpu_seconds(), time.perf_counter()
    summary = controller.run()
    return {
        "cpu": children_cpu_seconds() - cpu_before,
        "wall": time.perf_counter() - wall_before,
        "summary": summary,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", default=str(REPO / "studies.yaml"))
    parser.add_argument("--study", default="demo")
    parser.add_argument("--trials", type=int, default=None, help="default: the study's budget.trials")
    parser.add_argument("--concurrency", type=int, default=None, help="default: the study's budget.concurrency")
    args = parser.parse_args()

    base = yaml.safe_load(Path(args.studies).read_text())["studies"][args.study]
    trials = args.trials or base["budget"]["trials"]
    concurrency = args.concurrency or base["budget"].get("concurrency", 1)
    print(f"study {args.study}: {trials} trials, concurrency {concurrency}, sampler {base.get('sampler')}")
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        work = Path(tmp)
        results = {
            "pruned": run_variant(base, "with-pruner", base.get("pruner", {"type": "median"}), work, trials, concurrency),
            "nop": run_variant(base, "no-pruner", {"type": "none"}, work, trials, concurrency),
        }
    print(f"{'run':<12} {'pruner':<10} {'trial CPU-s':>12} {'wall s':>8} {'complete':>9} {'pruned':>7} {'best value':>11}")
    for label, result in results.items():
        s = result["summary"]
        pruner = base.get("pruner", {}).get("type", "median") if label == "pruned" else "none"
        best = "-" if s.best_value is None else f"{s.best_value:.4f}"
        print(f"{label:<12} {pruner:<10} {result['cpu']:>12.1f} {result['wall']:>8.1f} {s.complete:>9} {s.pruned:>7} {best:>11}")
    ratio = results["pruned"]["cpu"] / results["nop"]["cpu"]
    print(f"trial CPU-seconds with pruner / without: {ratio:.2f} ({(1 - ratio) * 100:.0f}% saved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
