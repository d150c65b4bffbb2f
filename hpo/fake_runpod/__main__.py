"""``python -m hpo.fake_runpod``: run a fake RunPod for a rehearsal until Ctrl-C.

Prints the URL, the ``export`` line that points this project (and the
runpod SDK's GraphQL base) at it, a comment line on setting the SDK's key, with the account's API key: a random one made for this
start unless ``--api-key`` names one. Ctrl-C kills every pod's processes and
stops the server. Pods run as local processes with the user's rights.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from hpo.fake_runpod._catalog import DEFAULT_DATA_CENTER
from hpo.fake_runpod._server import FakeRunPod


def _volume(text: str) -> tuple[str, Path]:
    volume_id, sep, folder = text.partition("=")
    if not sep or not volume_id or not folder:
        raise argparse.ArgumentTypeError(f"expected VOLUME_ID=/path/to/dir, got {text!r}")
    return volume_id, Path(folder).expanduser()


def _registry(text: str) -> tuple[str, str]:
    name, sep, registry_id = text.partition("=")
    if not sep or not name or not registry_id:
        raise argparse.ArgumentTypeError(f"expected NAME=ID, got {text!r}")
    return name, registry_id


def build_parser() -> argparse.ArgumentParser:
    """The command line of the fake server."""
    parser = argparse.ArgumentParser(
        prog="python -m hpo.fake_runpod",
        description="Run a fake RunPod API (REST v2 + GraphQL) on loopback; pods run as local processes.",
    )
    parser.add_argument("--port", type=int, default=8765, help="loopback port (0 = any free port; default 8765)")
    parser.add_argument(
        "--volume",
        type=_volume,
        action="append",
        default=[],
        metavar="ID=DIR",
        help="a network volume id and the local folder standing in for it (repeatable)",
    )
    parser.add_argument("--data-center", default=DEFAULT_DATA_CENTER, help="data center of the volumes")
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="an accepted account API key (repeatable; default: a random key, printed at start)",
    )
    parser.add_argument("--time-scale", type=float, default=20.0, help="fake seconds per real second (default 20)")
    parser.add_argument("--provision-seconds", type=float, default=10.0, help="fake seconds in PROVISIONING")
    parser.add_argument("--start-seconds", type=float, default=5.0, help="fake seconds in STARTING")
    parser.add_argument("--kill-grace-seconds", type=float, default=5.0, help="SIGTERM -> SIGKILL on preemption")
    parser.add_argument("--restart-delay-seconds", type=float, default=2.0, help="before an exited container reruns")
    parser.add_argument("--preempt-rate", type=float, default=0.0, help="random preemptions per spot pod per fake hour")
    parser.add_argument("--seed", type=int, default=0, help="seed of pod ids and preemption dice")
    parser.add_argument("--balance", type=float, default=100.0, help="account balance in USD (default 100)")
    parser.add_argument(
        "--bid-floor-swing", type=float, default=0.0, help="how far the spot floor swings, as a fraction (default 0)"
    )
    parser.add_argument("--bid-floor-period", type=float, default=3600.0, help="fake seconds per floor swing")
    parser.add_argument(
        "--registry", type=_registry, action="append", default=[], metavar="NAME=ID",
        help="a container registry credential of the account (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--private-image", action="append", default=[], metavar="PREFIX",
        help="image prefix that fails to pull without a registry credential (repeatable)",
    )  # fmt: skip
    parser.add_argument("--graphql-retired", action="store_true", help="/graphql answers 410 as a retired API")
    parser.add_argument("--workdir", type=Path, default=None, help="where pod folders and container logs go")
    parser.add_argument(
        "--pod-command",
        default=None,
        help="the command every pod runs, shell-quoted (default: this Python with -m hpo.agent)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the fake, print how to use it, serve until Ctrl-C (or SIGTERM)."""
    args = build_parser().parse_args(argv)
    fake = FakeRunPod(
        volumes=dict(args.volume),
        volume_data_center=args.data_center,
        api_keys=set(args.api_key) or None,
        time_scale=args.time_scale,
        provision_seconds=args.provision_seconds,
        start_seconds=args.start_seconds,
        kill_grace_seconds=args.kill_grace_seconds,
        restart_delay_seconds=args.restart_delay_seconds,
        preempt_rate_per_hour=args.preempt_rate,
        seed=args.seed,
        balance_usd=args.balance,
        pod_command=shlex.split(args.pod_command) if args.pod_command else None,
        workdir=args.workdir,
        port=args.port,
        bid_floor_swing=args.bid_floor_swing,
        bid_floor_period_seconds=args.bid_floor_period,
        registries=dict(args.registry),
        private_images=list(args.private_image),
        graphql_retired=args.graphql_retired,
    )
    done = threading.Event()
    # Both signals stop it, even where the shell started it with SIGINT ignored (a background job).
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    fake.start()
    try:
        env = fake.client_env()
        print(f"fake RunPod listening on {fake.url} (time x{args.time_scale:g}; pod logs under {fake.workdir})")
        print(" ".join(["export", *(f"{k}={shlex.quote(v)}" for k, v in env.items())]))
        print(fake.sdk_hint())
        control = '-H "Authorization: Bearer $RUNPOD_API_KEY" -H "Content-Type: application/json"'
        print(f"control: curl {control} -X POST {fake.url}/_fake/pods/POD_ID/preempt")
        print("pods run as local processes with your rights: keep the key to yourself")
        print("Ctrl-C stops it and kills every pod.", flush=True)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        print("fake RunPod stopped; pods killed.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
