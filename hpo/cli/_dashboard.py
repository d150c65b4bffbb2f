"""``hpo dashboard --study NAME``: optuna-dashboard on the study's storage, read-only."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from hpo.cli._common import add_study_arguments, study_from_args


def _port(text: str) -> int:
    """A TCP port number, 0 to 65535; anything else is a usage error (exit 2), not a traceback."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535 (got {text!r})")
    return int(text)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "dashboard",
        help="serve optuna-dashboard on a study, live beside its controller",
        description="Serve optuna-dashboard on the study's storage (the volume's journal or the study's "
        "storage URL), read-only: it answers GET and HEAD only. New trials and reports show up a few seconds "
        "after the controller writes them. Runs until Ctrl-C (or SIGTERM).",
    )
    add_study_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; the "
                        "dashboard has no login: from another machine, reach it through an SSH tunnel, "
                        "ssh -L 8080:127.0.0.1:8080 HOST)")
    parser.add_argument("--port", type=_port, default=8080, help="port to listen on (default: 8080; 0: any free port)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer requests for this host name (a reverse proxy's); by default only the "
                        "address listened on, and localhost on loopback, are answered (against DNS rebinding)")
    parser.set_defaults(handler=dashboard)


def dashboard(args: argparse.Namespace) -> int:
    # Here, not at the top: optuna-dashboard imports Optuna's importance module, which loads
    # scikit-learn (and SciPy) wherever they are installed, and no other command needs any of it.
    from hpo.dashboard import serve_dashboard

    config = study_from_args(args)

    def ready(url: str) -> None:
        # stderr, like our other messages; flushed so a script waiting for the line sees it now.
        print(f"hpo: dashboard of study {config.name!r} at {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    # SIGTERM (systemd, docker stop, timeout) stops the dashboard as cleanly as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve_dashboard(config, host=args.host, port=args.port, ready=ready, allow_hosts=args.allow_host)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
