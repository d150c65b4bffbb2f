"""A pod's container as a local process: start it, watch it, signal its whole process group.

Each container run gets its own session (``start_new_session=True``), so the
process group id equals the leader's pid and one ``killpg`` reaches everything
the command spawned, as stopping a Docker container does. When the leader
exits, the rest of its group is killed too: a container ends with its PID 1.
A process of the container that moved to a process group of its own (a warm
worker runs each attempt so) is still the container's, as it would be in its
PID namespace: it is found by the variables every process of the run inherits
(the pod's id and the fake's URL), started since the run began, and signalled
with the rest.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

# The only variables a container inherits from the server's environment, so
# that Python and the shell work. Nothing else leaks in (no API keys, no cloud
# credentials): a RunPod container sees only what its pod was given.
INHERITED_ENV_NAMES: tuple[str, ...] = ("PATH", "HOME", "LANG")

# What a create request may put in a pod's environment. A pod here is a local
# process with the user's rights, so a variable that makes a shell, an
# interpreter, the dynamic loader or a helper program load or run something of
# the request's choosing (BASH_ENV, LD_PRELOAD, PYTHONWARNINGS, BROWSER, ...)
# would run that on the user's machine: only plain names are taken, and none
# of these. RunPod's own variables (RUNPOD_*, PUBLIC_KEY, CUDA_VERSION) are
# the fake's to set and always win over the request's.
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
MAX_ENV_VARS = 50  # RunPod's limit on a pod's own variables
MAX_ENV_VALUE_CHARS = 32 * 1024
DANGEROUS_ENV_NAMES: frozenset[str] = frozenset({
    # shells
    "BASH_ENV", "ENV", "SHELL", "SHELLOPTS", "BASHOPTS", "IFS", "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND",
    "CDPATH", "GLOBIGNORE", "HISTFILE", "INPUTRC", "ZDOTDIR",
    # where programs and their configuration are found
    "PATH", "HOME", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_DATA_HOME", "XDG_DATA_DIRS",
    "XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "CURL_HOME", "WGETRC", "NETRC", "TERMINFO", "TZDIR",
    # programs that other programs start
    "BROWSER", "EDITOR", "VISUAL", "PAGER", "MANPAGER", "GIT_PAGER", "LESSOPEN", "LESSCLOSE", "SSH_ASKPASS",
    "SUDO_ASKPASS",
    # the C library and the dynamic loader
    "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "RES_OPTIONS", "LOCALDOMAIN", "OPENSSL_CONF",
    "OPENSSL_ENGINES", "SSLKEYLOGFILE",
})  # fmt: skip
DANGEROUS_ENV_PREFIXES: tuple[str, ...] = (
    "LD_", "DYLD_", "GCONV_", "MALLOC_", "GLIBC_", "PYTHON", "PERL", "RUBY", "GEM_", "BUNDLE_", "NODE_", "NPM_",
    "JAVA_", "_JAVA_", "JDK_", "CLASSPATH", "GIT_", "PIP_", "UV_", "CONDA", "TCL", "TK_", "LUA_", "R_",
    "BASH_FUNC_", "SSL_", "KRB5", "PKG_CONFIG", "QT_", "GTK_", "GIO_", "DBUS_", "COVERAGE_",
)  # fmt: skip


def env_problem(name: object, value: object) -> str | None:
    """Why a create request may not set ``name`` to ``value`` in a pod's environment, or None if it may."""
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        return f"{name!r} is not a plain variable name (A-Z, 0-9 and _, not starting with a digit)"
    if name in DANGEROUS_ENV_NAMES or name.startswith(DANGEROUS_ENV_PREFIXES):
        return (
            f"{name} may not be set: it would make a program in the pod load or run something the request chose, "
            f"and the fake RunPod runs pods as local processes with your rights"
        )
    if not isinstance(value, str):
        return f"{name} must be a string"
    if "\x00" in value:
        return f"{name} holds a NUL character"
    if len(value) > MAX_ENV_VALUE_CHARS:
        return f"{name} is longer than {MAX_ENV_VALUE_CHARS} characters"
    return None


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
        self._started = time.time()
        # What every process of this run inherits and no other run shares while it lives (a fake's URL has its port).
        self._marks = {name: env[name] for name in _RUN_MARKS if env.get(name)}

    def poll(self) -> int | None:
        """The exit code once the leader has exited (and its group was killed), else None."""
        if self.exit_code is None:
            code = self._process.poll()
            if code is not None:
                self.exit_code = code
                self.signal_group(signal.SIGKILL)  # stragglers die with PID 1
        return self.exit_code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the container's process group and its strays' groups; a group already gone is fine."""
        for group in (self.pid, *self._stray_groups()):
            try:
                os.killpg(group, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def _stray_groups(self) -> set[int]:
        """Process groups, other than the container's, of processes this run started (found by their environment)."""
        if len(self._marks) < len(_RUN_MARKS):
            return set()
        ours = os.getpgrp()
        groups: set[int] = set()
        for proc in psutil.process_iter(["pid", "create_time"]):
            try:
                if proc.info["create_time"] < self._started - 1.0:
                    continue
                env = proc.environ()
                if all(env.get(name) == value for name, value in self._marks.items()):
                    groups.add(os.getpgid(proc.info["pid"]))
            except (psutil.Error, OSError):
                continue
        return groups - {self.pid, ours}

    def kill(self) -> None:
        """SIGKILL the whole group and reap the leader (returns within a moment)."""
        self.signal_group(signal.SIGKILL)
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        self.poll()


_RUN_MARKS = ("RUNPOD_POD_ID", "RUNPOD_API_BASE_URL")


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
