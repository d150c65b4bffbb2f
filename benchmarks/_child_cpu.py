"""The CPU seconds a child process used, as its parent sees them (for the start-up benchmarks)."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path


def run_measured(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``command`` once; the CPU seconds (user + system) it took, and what it returned."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done
