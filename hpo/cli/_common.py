"""What every command shares: finding studies.yaml, logging, JSON output.

Light to import: every command module imports it, and a command's ``--help``
should not wait for Optuna; what needs Optuna imports it when called.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpo.config import StudyConfig

DEFAULT_STUDIES = "studies.yaml"


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """``--study`` and ``--studies``, as every study command takes them."""
    parser.add_argument("--study", required=True, metavar="NAME", help="the study's name in studies.yaml")
    add_studies_argument(parser)


def add_studies_argument(parser: argparse.ArgumentParser) -> None:
    """``--studies FILE``, for commands about the whole file (``hpo list``) as well as one study."""
    parser.add_argument(
        "--studies",
        metavar="FILE",
        default=os.environ.get("HPO_STUDIES", DEFAULT_STUDIES),
        help="the studies file (default: $HPO_STUDIES or ./studies.yaml)",
    )


def study_from_args(args: argparse.Namespace) -> StudyConfig:
    """Load the study the command names (ConfigError names file, study and key)."""
    from hpo.config import load_study

    return load_study(Path(args.studies), args.study)


def setup_logging(verbose: int) -> None:
    """Warnings by default, our INFO with ``-v``, Optuna's own INFO with ``-vv``; all on stderr."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="hpo: %(levelname)s: %(message)s", stream=sys.stderr)
    import optuna  # here, not at the top: called once a command runs, and every command uses Optuna

    optuna.logging.set_verbosity(logging.INFO if verbose >= 2 else logging.WARNING)


def print_json(value: Any) -> None:
    """One JSON document on stdout, for scripts."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
