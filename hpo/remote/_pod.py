"""The controller pod's side: ``python -m hpo.agent`` with ``HPO_CONTROLLER`` set runs the study's controller.

On the pod, in order:

1. the controller's output goes to ``hpo/<study>/controller/log.txt`` on the
   mounted volume (``hpo logs --controller`` prints it from the laptop);
2. the bundle named by ``HPO_CONTROLLER_BUNDLE`` is read and checked against
   that hash, its objectives snapshot unpacked (checked against its own), and
   a project folder made on the container's disk: the study's studies.yaml,
   with the volume reached at its mount (``volume.local_path``), and
   ``objectives/``;
3. the key RunPod filled in from the secret (``HPO_RUNPOD_API_KEY``) becomes
   the controller's ``RUNPOD_API_KEY`` (the pod-scoped key RunPod injected is
   kept aside, to end this pod), and the controller runs as ``hpo run`` would,
   its lease naming this pod and its pod's cost counted in the study's spend.

Whatever way the run ends by itself (the study finished, ``hpo stop``, the
budget or the balance out, another controller holding the study, or a study
that cannot run), the pod then terminates itself, as a trial's pod does, since
RunPod restarts a container whose command exits. A crash (the volume failing,
a bug) exits instead, and RunPod's restart starts a new controller, which
adopts the study like any other: its trials, its warm workers and this pod's
lease. Restarts are counted on the volume (``restarts.json``): after
:data:`MAX_FAILED_STARTS` failed starts within :data:`FAILED_STARTS_WINDOW`
seconds, the pod ends itself rather than bill on in a crash loop.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import optuna

from hpo.agent._output import redirect_output
from hpo.backends import worker_hook
from hpo.backends.runpod._api import RunPodApi
from hpo.code import unpack_objectives
from hpo.config import load_study
from hpo.controller import LineProgress, RunSummary, build_controller
from hpo.errors import ConfigError, HpoError, JournalFencedError, LeaseError, ObjectiveError, VolumeError
from hpo.layout import StudyLayout
from hpo.remote._bundle import BUNDLE_ENV, read_bundle
from hpo.remote._launch import CONTROLLER_ENV, KEY_ENV, VOLUME_ENV
from hpo.remote._meter import PodMeter
from hpo.volume import Volume, open_volume

log = logging.getLogger("hpo.controller")

MAX_FAILED_STARTS = 5
FAILED_STARTS_WINDOW = 1800.0
_MAX_KEPT = 20

POD_ENV = "RUNPOD_POD_ID"


def run_controller_pod(env: Mapping[str, str], *, workdir: Path | None = None) -> int:
    """Run the study's controller on this pod (see the module docstring); the exit code, if it returns at all.

    ``env`` is the environment the container started with (its ``RUNPOD_API_KEY``
    is the pod-scoped key, used to end the pod); ``workdir`` is where the project
    folder goes (default: ``./hpo-controller`` on the container's disk).
    """
    logging.basicConfig(level=logging.INFO, format="hpo.controller: %(message)s", stream=sys.stderr)
    optuna.logging.set_verbosity(logging.WARNING)  # as `hpo run` has it: Optuna's own news is ours to tell
    study, root, pod = env.get(CONTROLLER_ENV, ""), env.get(VOLUME_ENV, ""), env.get(POD_ENV)
    if not study or not root:
        print(f"hpo.controller: {CONTROLLER_ENV} and {VOLUME_ENV} must both be set", file=sys.stderr)
        return _end(env, 1)
    try:
        volume = open_volume(root)
        _log_to_volume(volume, study)
    except (HpoError, OSError) as exc:  # the volume is not there yet: a restart tries again
        print(f"hpo.controller: study {study!r}: cannot open the volume at {root}: {exc}", file=sys.stderr)
        return 1
    starts = FailedStarts(volume, study, pod)
    print(f"--- controller of study {study} starting on pod {pod or '(none)'} at {_utc_now()}", flush=True)
    if starts.too_many():
        print(
            f"hpo.controller: {MAX_FAILED_STARTS} failed starts within {FAILED_STARTS_WINDOW / 60:.0f} minutes: "
            f"this pod ends; `hpo run --study {study} --remote` starts a new one, `hpo run --study {study}` runs "
            "the study from here",
            flush=True,
        )
        return _end(env, 1)
    try:
        summary = run_remote_controller(env, volume, study, root, pod, workdir or Path.cwd() / "hpo-controller")
    except (LeaseError, JournalFencedError) as exc:
        print(f"hpo.controller: {exc}; this controller pod ends", flush=True)
        return _end(env, 1)
    except (ConfigError, ObjectiveError) as exc:  # nothing a restart would change
        print(f"hpo.controller: {exc}; this controller pod ends", flush=True)
        return _end(env, 1)
    except (HpoError, VolumeError) as exc:
        print(f"hpo.controller: {exc}; the container restarts and a new controller adopts the study", flush=True)
        starts.record()
        return 1
    except Exception:  # noqa: BLE001 - a bug of ours: say it; the restart adopts the study
        traceback.print_exc()
        starts.record()
        return 1
    print(f"hpo.controller: {_summary_text(summary)}; this controller pod ends", flush=True)
    return _end(env, 0)


def run_remote_controller(
    env: Mapping[str, str], volume: Volume, study: str, root: str, pod: str | None, workdir: Path
) -> RunSummary:
    """Steps 2 and 3 of the module docstring; the run's summary."""
    key = env.get(KEY_ENV, "")
    if not key.strip() or "RUNPOD_SECRET_" in key:
        raise ConfigError(
            f"study {study!r}: {KEY_ENV} holds no API key (RunPod did not fill in the secret it names); "
            f"make the secret with `hpo secret set --study {study}`, then `hpo run --study {study} --remote` again"
        )
    bundle = read_bundle(volume, study, env.get(BUNDLE_ENV, ""))
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / "cache"
    code = unpack_objectives(volume, study, bundle.code, cache)
    objectives = workdir / "objectives"
    if objectives.is_symlink() or objectives.exists():
        objectives.unlink()
    objectives.symlink_to(code / "objectives", target_is_directory=True)
    studies = workdir / "studies.yaml"
    studies.write_text(bundle.studies_yaml(root), encoding="utf-8")
    config = load_study(studies, study)
    # The controller's key from here on; the pod-scoped one stays in `env`, for ending this pod.
    os.environ["RUNPOD_API_KEY"] = key
    os.environ.pop(KEY_ENV, None)
    meter = PodMeter(RunPodApi.from_env(), pod) if pod else None
    controller = build_controller(config, progress=LineProgress(sys.stdout), cache_dir=cache, pod=pod, own_cost=meter)
    return controller.run()


class FailedStarts:
    """This pod's recent failed controller starts, kept on the volume (its container disk is wiped on restart).

    The file lies on a volume every pod can write: a malformed one counts as none.
    """

    def __init__(self, volume: Volume, study: str, pod: str | None, *, clock: Callable[[], float] = time.time) -> None:
        self._volume = volume
        self._key = StudyLayout(study).controller_restarts
        self._pod = pod
        self._clock = clock

    def _recent(self) -> list[float]:
        try:
            raw = self._volume.read_json(self._key)
        except (VolumeError, ValueError):
            return []
        if not isinstance(raw, dict) or raw.get("pod") != self._pod or not isinstance(raw.get("failures"), list):
            return []
        now = self._clock()
        return [
            float(t) for t in raw["failures"][-_MAX_KEPT:]
            if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
            and 0 <= now - t <= FAILED_STARTS_WINDOW
        ]  # fmt: skip

    def too_many(self) -> bool:
        return len(self._recent()) >= MAX_FAILED_STARTS

    def record(self) -> None:
        """Count one failed start now (best effort: a failing volume counts nothing)."""
        try:
            failures = [*self._recent(), self._clock()][-_MAX_KEPT:]
            self._volume.write_json(self._key, {"pod": self._pod, "failures": failures})
        except VolumeError as exc:
            log.warning("cannot record this failed start on the volume: %s", exc)


def _log_to_volume(volume: Volume, study: str) -> None:
    """From here on, this process's output goes to the study's controller log on the mounted volume."""
    path = volume.local_path(StudyLayout(study).controller_log)
    if path is None:
        return  # not a folder: the container's own log keeps it
    print(f"hpo.controller: output goes to {path}", file=sys.stderr, flush=True)
    redirect_output(path)


def _end(env: Mapping[str, str], code: int) -> int:
    """End this worker as its backend does (a pod terminates itself with the key RunPod injected); off a pod, return."""
    hook = worker_hook(env)
    if hook is not None:
        sys.stdout.flush()
        hook.end(env)
    return code


def _summary_text(summary: RunSummary) -> str:
    done = f"{summary.complete} complete, {summary.pruned} pruned, {summary.failed} failed"
    why = f"; {summary.stopped}" if summary.stopped else ""
    left = f"; {summary.running} trial(s) still running" if summary.running else ""
    return f"study {summary.study}: {done}{left}{why}"


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
