"""What every command shares: finding studies.yaml, logging, JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import optuna

from hpo.config import StudyConfig, load_study

DEFAULT_STUDIES = "studies.yaml"


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """``--study`` and ``--studies``, as every study command takes them."""
    parser.add_argument("--study", required=True, metavar="NAME", help="the study's name in studies.yaml")
    parser.add_argument(
        "--studies",
        metavar="FILE",
        default=os.environ.get("HPO_STUDIES", DEFAULT_STUDIES),
        help="the studies file (default: $HPO_STUDIES or ./studies.yaml)",
    )


def study_from_args(args: argparse.Namespace) -> StudyConfig:
    """Load the study the command names (ConfigError names file, study and key)."""
    return load_study(Path(args.studies), args.study)


def setup_logging(verbose: int) -> None:
    """Warnings by default, our INFO with ``-v``, Optuna's own INFO with ``-vv``; all on stderr."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="hpo: %(levelname)s: %(message)s", stream=sys.stderr)
    optuna.logging.set_verbosity(logging.INFO if verbose >= 2 else logging.WARNING)


def print_json(value: Any) -> None:
    """One JSON document on stdout, for scripts."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
