"""``hpo secret set|delete``: the RunPod secret holding the key a remote controller uses (``hpo run --remote``).

``set`` stores the API key in ``--key-env`` (default ``RUNPOD_API_KEY``) as
the account secret the study names (``compute.controller.secret``, default
``hpo_runpod_api_key``), creating it or replacing its value, after asking
(``--yes`` where nobody can answer). The call itself is made with
``RUNPOD_API_KEY``. The key is never printed, logged or written anywhere but
in RunPod's secret store. ``delete`` removes the secret.
"""

from __future__ import annotations

import argparse
import os
import sys

from hpo.cli._common import add_studies_argument, print_json
from hpo.errors import ConfigError

HELP = "store (or delete) the RunPod secret holding the API key a remote controller uses"

DEFAULT_NAME = "hpo_runpod_api_key"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "secret",
        help=HELP,
        description="Store the API key a remote controller (`hpo run --remote`) creates and terminates pods with "
        "as a RunPod account secret, which RunPod puts into the controller pod's environment when it boots; the "
        "key is never in a pod's plain environment, on the volume or in a log. `set` creates the secret or "
        "replaces its value; `delete` removes it. Revoke the key itself in RunPod's console (Settings > API Keys).",
    )
    parser.add_argument("action", choices=("set", "delete"), help="set: create or replace the secret; delete: remove it")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--study", metavar="NAME", help="the secret the study names (compute.controller.secret)")
    which.add_argument("--name", metavar="SECRET", help=f"the secret's name (default: {DEFAULT_NAME})")
    add_studies_argument(parser)
    parser.add_argument("--key-env", metavar="VAR", default="RUNPOD_API_KEY",
                        help="the environment variable holding the key to store (default: RUNPOD_API_KEY); a key "
                        "made for the controller alone can be revoked without touching yours")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask (needed where no terminal can answer)")
    parser.add_argument("--json", action="store_true", help="print what was done as JSON")
    parser.set_defaults(handler=secret)


def secret(args: argparse.Namespace) -> int:
    from hpo.backends.runpod import RunPodApi
    from hpo.remote._secret import delete_secret, set_secret

    name = _secret_name(args)
    if args.action == "set":
        value = os.environ.get(args.key_env, "").strip()
        if not value:
            raise ConfigError(f"hpo secret set: ${args.key_env} is empty: put the API key to store there")
        question = (
            f"Store the API key in ${args.key_env} as RunPod secret {name!r} on your account? A remote controller's "
            "pod reads it to create and terminate this study's pods (anyone who can start a pod on your account "
            "can refer to it)."
        )
    else:
        value = ""
        question = f"Delete RunPod secret {name!r}? Remote controllers that name it can no longer start."
    if not args.yes and not _confirmed(question):
        print("hpo: nothing done", file=sys.stderr)
        return 1
    api = RunPodApi.from_env()
    secret_id: str | None
    try:
        if args.action == "set":
            secret_id, created = set_secret(api, name, value)
            done = "created" if created else "replaced its value"
        else:
            deleted = delete_secret(api, name)
            secret_id, done = deleted, "deleted" if deleted else "not found"
    finally:
        api.close()
    if args.json:
        print_json({"secret": name, "id": secret_id, "done": done})
    elif args.action == "set":
        print(f"RunPod secret {name}: {done}; a controller pod refers to it as {{{{ RUNPOD_SECRET_{name} }}}}")
    else:
        print(f"RunPod secret {name}: {done}")
    return 0 if secret_id is not None else 1


def _secret_name(args: argparse.Namespace) -> str:
    if args.study is None:
        return str(args.name or DEFAULT_NAME)
    from pathlib import Path

    from hpo.backends.runpod import RunPodCompute
    from hpo.config import load_study

    config = load_study(Path(args.studies), args.study)
    if not isinstance(config.compute, RunPodCompute):
        raise ConfigError(f"study {args.study!r} runs its trials locally: it has no remote controller, and no secret")
    return config.compute.controller.secret


def _confirmed(question: str) -> bool:
    """Ask on the terminal; refuse (ConfigError) where there is none to ask on."""
    if not sys.stdin.isatty():
        raise ConfigError("hpo secret: no terminal to ask on: add --yes to go ahead")
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in {"y", "yes"}
