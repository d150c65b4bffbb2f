"""A pod's container as a local process: start it, watch it, signal its whole process group.

Each container run gets its own session (``start_new_session=True``), so the
process group id equals the leader's pid and one ``killpg`` reaches everything
the command spawned, as stopping a Docker container does. When the leader
exits, the rest of its group is killed too: a container ends with its PID 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# The only variables a container inherits from the server's environment, so
# that Python and the shell work. Nothing else leaks in (no API keys, no cloud
# credentials): a RunPod container sees only what its pod was given.
INHERITED_ENV_NAMES: tuple[str, ...] = ("PATH", "HOME", "LANG")


class Container:
    """One run of a pod's command: a process group whose output goes to the pod's log."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path) -> None:
        """Start ``argv`` now in ``cwd`` with exactly ``env``; stdout and stderr append to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid = self._process.pid
        self.exit_code: int | None = None

    def poll(self) -> int | None:
        """The exit code once the leader has exited (and its group was killed), else None."""
        if self.exit_code is None:
            code = self._process.poll()
            if code is not None:
                self.exit_code = code
                self.signal_group(signal.SIGKILL)  # stragglers die with PID 1
        return self.exit_code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the container's process group; a group already gone is fine."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL the whole group and reap the leader (returns within a moment)."""
        self.signal_group(signal.SIGKILL)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        self.poll()


def container_env(
    given: Mapping[str, str],
    injected: Mapping[str, str],
    *,
    mount_path: str | None,
    mount_dir: Path | None,
    server_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a pod's container: inherited basics, then the pod's env, then RunPod's variables.

    Values equal to the mount path or under it (``/workspace/...``) are
    rewritten to the local folder standing in for the volume: a local process
    cannot see a real ``/workspace``, so this is the fake's stand-in for the
    bind mount RunPod makes. RunPod's injected variables win over the pod's own
    of the same name, as they are RunPod's to set.
    """
    source = os.environ if server_env is None else server_env
    env = {name: source[name] for name in INHERITED_ENV_NAMES if name in source}
    for key, value in given.items():
        env[key] = rewrite_mount_path(value, mount_path, mount_dir)
    env.update(injected)
    return env


def rewrite_mount_path(value: str, mount_path: str | None, mount_dir: Path | None) -> str:
    """``value`` with a leading mount path replaced by the local folder (other values unchanged)."""
    if not mount_path or mount_dir is None:
        return value
    root = mount_path.rstrip("/") or "/"
    if value == root or value == root + "/":
        return str(mount_dir)
    if root != "/" and value.startswith(root + "/"):
        return str(mount_dir / value[len(root) + 1 :])
    return value


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (creating it): a container's disk is wiped on every start."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path
