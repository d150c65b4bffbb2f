"""``hpo cleanup --study NAME``: stop every worker of the study that no running trial owns."""

from __future__ import annotations

import argparse

from hpo.cleanup import cleanup
from hpo.cli._common import add_study_arguments, print_json, study_from_args
from hpo.controller import make_backend, open_study_volume


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "cleanup",
        help="terminate the study's pods (or processes) that no running trial owns",
        description="Terminate every worker of the study that no running trial owns: pods of finished or "
        "pruned trials, old attempts, leftovers of a crash. Running trials are left alone.",
    )
    add_study_arguments(parser)
    parser.add_argument("-n", "--dry-run", action="store_true", help="only show what would be terminated")
    parser.add_argument("--json", action="store_true", help="print what was done as JSON")
    parser.set_defaults(handler=run_cleanup)


def run_cleanup(args: argparse.Namespace) -> int:
    config = study_from_args(args)
    volume = open_study_volume(config)
    backend = make_backend(config, volume, passive=True)
    try:
        done = cleanup(config, volume, backend, dry_run=args.dry_run)
    finally:
        backend.close()
    verb = "would terminate" if args.dry_run else "terminated"
    if args.json:
        print_json(
            {
                "study": config.name,
                "dry_run": args.dry_run,
                "workers": [
                    {
                        "id": s.id,
                        "trial": s.handle.ref.trial if s.handle else None,
                        "attempt": s.handle.ref.attempt if s.handle else None,
                        "warm_worker": s.worker.index if s.worker else None,
                        "reason": s.reason,
                    }
                    for s in done
                ],
            }
        )
        return 0
    for stray in done:
        print(f"{verb} {stray.id} ({stray.what}): {stray.reason}")
    if not done:
        print(f"study {config.name}: nothing to clean up")
    return 0
