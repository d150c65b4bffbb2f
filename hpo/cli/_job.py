"""``hpo job --study NAME [--gpu TYPE] -- COMMAND ...``: run a command once where the study's trials run.

The command runs on a worker of the study's backend: on RunPod an on-demand
pod of the study's image with its network volume at ``/workspace`` (named
``hpojob-<study>-<job id>``, so no controller or ``hpo cleanup`` takes it for
a trial's), locally a process with the study's folder volume. It runs in the
volume's folder with the study's ``objectives/`` importable, its output goes
to ``hpo/<study>/jobs/<job id>/log.txt`` on the volume and is printed here as
it comes, and ``hpo job`` exits with the command's exit code once the job
has ended; the pod terminates itself when the command exits, and ``hpo job``
terminates it too, in case it could not.

Ctrl-C detaches: the job goes on (and its pod still ends itself), and the
lines printed say how to follow (``--follow ID``) or cancel (``--cancel ID``)
it. ``--list`` shows the study's jobs, and a worker that outlived its job;
``hpo cleanup`` leaves job workers alone, running or not (they are no trial's
strays), so ``--cancel`` is what ends one. The command's output goes to
stdout; what ``hpo job`` says itself goes to stderr.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from hpo.cli._common import add_study_arguments, print_json, study_from_args

if TYPE_CHECKING:
    from hpo.backends import Backend
    from hpo.config import StudyConfig
    from hpo.jobs import JobStatus, JobWorker
    from hpo.volume import Volume

HELP = "run a one-off command (data preparation) on a pod of the study, with its volume; print its output"

LOG_POLL = 1.0
"""Most seconds between two reads of a followed job's log (one small ranged read on S3)."""


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more (got {text!r})")
    return int(text)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "job",
        help=HELP,
        description="Run COMMAND once on a worker of the study's backend (a RunPod on-demand pod of the study's "
        "image, with its network volume at /workspace; locally, a process) in the volume's folder, with the "
        "study's objectives/ importable. Its output is kept in hpo/<study>/jobs/<id>/log.txt on the volume and "
        "printed here until it ends; the exit code is the command's. The pod ends itself when the command exits. "
        "Ctrl-C detaches (the job goes on); --follow ID reattaches, --cancel ID stops it.",
        epilog="example: hpo job --study f5-lr -- python /opt/F5-TTS/src/f5_tts/train/datasets/prepare_csv_wavs.py "
        "/workspace/f5/wavs/metadata.csv /workspace/f5/data/dataset",
    )
    add_study_arguments(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--follow", metavar="ID", help="print a job's log until it ends, and exit with its exit code")
    mode.add_argument("--cancel", metavar="ID", help="terminate a job's pod (or process)")
    mode.add_argument("--list", action="store_true", help="the study's jobs: command, state, exit code, pod")
    mode.add_argument("--detach", action="store_true", help="start the job, print its id and return at once")
    parser.add_argument("--gpu", action="append", metavar="TYPE", dest="gpu_types",
                        help="the pod's GPU type (repeat for fallbacks, in order; default: the study's gpu_types)")
    parser.add_argument("--gpu-count", type=_positive, metavar="N", help="GPUs for the pod (default: the study's)")
    parser.add_argument("--json", action="store_true", help="with --list: print the jobs as JSON")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="the command and its arguments")
    parser.set_defaults(handler=run_job_command)


def run_job_command(args: argparse.Namespace) -> int:
    from hpo.controller import make_backend, open_study_volume  # here: `hpo job --help` stays light

    argv = args.argv[1:] if args.argv[:1] == ["--"] else list(args.argv)
    starting = not (args.follow or args.cancel or args.list)
    if argv and not starting:
        return _usage("a command is given only to start a job, not with --follow, --cancel or --list")
    if (args.gpu_types or args.gpu_count) and not starting:
        return _usage("--gpu and --gpu-count go with starting a job")
    config = study_from_args(args)
    volume = open_study_volume(config)
    backend = make_backend(config, volume)
    try:
        if args.list:
            return _list(config, volume, backend, as_json=args.json)
        if args.cancel:
            return _cancel(config, backend, args.cancel)
        if args.follow:
            return _follow(config, volume, backend, _known_job(config, volume, args.follow))
        return _start(config, volume, backend, argv, args)
    finally:
        backend.close()


def _usage(message: str) -> int:
    print(f"hpo job: error: {message}", file=sys.stderr)
    return 2


def _start(config: StudyConfig, volume: Volume, backend: Backend, argv: list[str], args: argparse.Namespace) -> int:
    from hpo.code import check_volume_code_trusted
    from hpo.jobs import JobRequest, start_job

    check_volume_code_trusted(config)  # a local job on an S3 volume runs what the volume's job.json says
    request = JobRequest("", tuple(args.gpu_types or ()), args.gpu_count)
    try:
        spec, worker = start_job(
            volume, backend, config.name, argv, objectives=config.source.parent / "objectives", request=request
        )
    except KeyboardInterrupt:
        _say(
            f"interrupted while starting the job; `hpo job --study {config.name} --list` shows whether a worker "
            "was made, and --cancel ID ends it"
        )
        return _interrupted()
    _say(f"job {spec.id}: {_worker_text(worker)} for study {config.name}; its log is "
         f"hpo/{config.name}/jobs/{spec.id}/log.txt on the volume")  # fmt: skip
    if args.detach:
        print(spec.id)
        _say_how_to(config.name, spec.id)
        return 0
    return _follow(config, volume, backend, spec.id)


def _follow(config: StudyConfig, volume: Volume, backend: Backend, job_id: str) -> int:
    from hpo.errors import CloudError
    from hpo.jobs import JobFollower, end_job

    follower = JobFollower(
        volume, backend, config.name, job_id, _stdout_writer(),
        poll_interval=min(LOG_POLL, config.poll_interval), check_interval=config.poll_interval,
    )  # fmt: skip
    try:
        status = follower.follow()
    except KeyboardInterrupt:
        _say(f"detached from job {job_id}; it goes on, and its worker ends itself when the command exits")
        _say_how_to(config.name, job_id)
        return _interrupted()
    try:
        end_job(backend, job_id)  # the worker ends itself; this ends one that could not
    except CloudError as exc:
        _say(f"job {job_id}: could not terminate its pod ({exc}); `hpo job --study {config.name} --cancel {job_id}`")
    _say(f"job {job_id}: {_status_text(status)}")
    return status.exit_code if status.exit_code is not None else 1


def _cancel(config: StudyConfig, backend: Backend, job_id: str) -> int:
    from hpo.jobs import cancel_job, check_job_id

    ended = cancel_job(backend, check_job_id(job_id))
    if not ended:
        print(f"job {job_id}: no worker of study {config.name} runs it (it has ended)")
    for worker in ended:
        print(f"terminated {_worker_text(worker)} of job {job_id}")
    return 0


def _list(config: StudyConfig, volume: Volume, backend: Backend, *, as_json: bool) -> int:
    from hpo.jobs import job_rows

    rows = job_rows(volume, backend, config.name)
    if as_json:
        print_json({
            "study": config.name,
            "jobs": [
                {"id": r.id, "command": r.command, "state": r.state, "exit_code": r.exit_code,
                 "workers": [{"id": w.id, "status": w.status, **w.detail} for w in r.workers]}
                for r in rows
            ],
        })  # fmt: skip
        return 0
    if not rows:
        print(f"study {config.name}: no jobs")
    for row in rows:
        code = f" (exit code {row.exit_code})" if row.exit_code is not None else ""
        workers = "".join(f"; {_worker_text(w)}" for w in row.workers)
        if row.workers and row.exit_code is not None:  # its worker could not end itself: it bills on
            workers += f"; outlived its job: hpo job --study {config.name} --cancel {row.id}"
        print(f"{row.id}  {row.state}{code}{workers}  {row.command}")
    return 0


def _known_job(config: StudyConfig, volume: Volume, job_id: str) -> str:
    """``job_id`` if the study has that job on the volume; else a one-line ConfigError."""
    from hpo.errors import ConfigError
    from hpo.jobs import check_job_id
    from hpo.layout import StudyLayout

    if not volume.exists(StudyLayout(config.name).job_spec(check_job_id(job_id))):
        raise ConfigError(f"study {config.name!r} has no job {job_id!r} (`hpo job --study {config.name} --list`)")
    return job_id


def _worker_text(worker: JobWorker) -> str:
    """``pod abc123 (NVIDIA RTX A5000, $0.270/h, running)`` or ``process 4242 (running)``."""
    detail = worker.detail
    if "pod_id" in detail:
        parts = [str(p) for p in (detail.get("gpu_type"),) if p]
        if isinstance(detail.get("cost_per_hr"), float):
            parts.append(f"${detail['cost_per_hr']:.3f}/h")
        parts.append(worker.status)
        return f"pod {worker.id} ({', '.join(parts)})"
    return f"process {detail.get('pid', worker.id)} ({worker.status})"


def _status_text(status: JobStatus) -> str:
    from hpo.jobs import EXITED, TERMINATED

    if status.state == EXITED:
        return f"the command exited with code {status.exit_code}"
    if status.state == TERMINATED:
        return f"stopped (the command exited with code {status.exit_code})"
    return f"{status.state}: {status.detail} (exit code {status.exit_code})"


def _say_how_to(study: str, job_id: str) -> None:
    _say(f"  follow: hpo job --study {study} --follow {job_id}")
    _say(f"  cancel: hpo job --study {study} --cancel {job_id}")


def _say(text: str) -> None:
    print(f"hpo: {text}", file=sys.stderr)


def _interrupted() -> int:
    from hpo.cli import EXIT_INTERRUPTED

    return EXIT_INTERRUPTED


def _stdout_writer() -> Callable[[bytes], None]:
    """Writes the log's bytes to stdout as text, a UTF-8 character cut between two reads kept whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(data: bytes) -> None:
        sys.stdout.write(decoder.decode(data))
        sys.stdout.flush()

    return write
