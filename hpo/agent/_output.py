"""Where the agent's own output goes when nobody reads the worker's: the attempt's ``log.txt``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def redirect_output(log_path: Path) -> None:
    """Send this process's stdout and stderr to the attempt's ``log.txt`` on the volume."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
