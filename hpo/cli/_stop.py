"""``hpo stop --study NAME``: ask the study's controller (a remote one's pod, or a run elsewhere) to stop.

The controller obeys within ``CHECK_SECONDS`` or so (it polls a control file,
:mod:`hpo.controller._stop`) and ends its run as Ctrl-C would: running trials
go on and end their pods themselves, and the next ``hpo run`` adopts them. A
remote controller's pod then terminates itself; one that has not ended when
``--timeout`` runs out is terminated.
"""

from __future__ import annotations

import argparse
import sys

from hpo.cli._common import add_study_arguments, print_json, study_from_args

HELP = "stop the study's controller (a remote one's pod too); its running trials go on"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (got {text!r})")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "stop",
        help=HELP,
        description="Ask the controller holding the study (started by `hpo run --remote` on a RunPod pod, or by "
        "`hpo run` anywhere) to stop, and wait for it to end. It stops as Ctrl-C stops `hpo run`: running trials "
        "go on and their pods end themselves; the next `hpo run` adopts them. A controller pod that has not ended "
        "within --timeout is terminated.",
    )
    add_study_arguments(parser)
    parser.add_argument("--timeout", type=_seconds, default=180.0, metavar="SECONDS",
                        help="how long to wait for the controller to end (default: 180)")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.set_defaults(handler=stop)


def stop(args: argparse.Namespace) -> int:
    from hpo.backends.runpod import RunPodCompute
    from hpo.remote import runpod_backend
    from hpo.remote._stop import NONE_RUNNING, TIMED_OUT, stop_controller

    config = study_from_args(args)
    volume = config.volume.open()
    backend = runpod_backend(config, volume) if isinstance(config.compute, RunPodCompute) else None
    say = (lambda text: None) if args.json else (lambda text: print(f"hpo: {text}", file=sys.stderr))
    try:
        outcome = stop_controller(volume, config.name, backend, timeout=args.timeout, say=say)
    finally:
        if backend is not None:
            backend.close()
    if args.json:
        print_json({"study": config.name, "outcome": outcome.how, "controller": outcome.holder, "pod": outcome.pod})
    elif outcome.how == NONE_RUNNING:
        print(f"study {config.name}: no controller is running it")
    else:
        print(f"study {config.name}: {outcome.holder}: {outcome.how}")
    if outcome.how == TIMED_OUT:
        print(
            f"hpo: error: study {config.name}: its controller ({outcome.holder}) did not stop within "
            f"{args.timeout:.0f}s; stop that process where it runs",
            file=sys.stderr,
        )
        return 1
    return 0
