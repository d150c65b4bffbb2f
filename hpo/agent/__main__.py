"""``python -m hpo.agent``: run the attempt named by HPO_STUDY, HPO_TRIAL, HPO_ATTEMPT, HPO_VOLUME."""

from __future__ import annotations

import logging
import os
import sys

from hpo.agent._runner import AttemptAddress, run_attempt
from hpo.errors import HpoError
from hpo.volume import open_volume


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="hpo.agent: %(message)s", stream=sys.stderr)
    try:
        address = AttemptAddress.from_env(dict(os.environ))
        return run_attempt(address, open_volume(address.volume_root))
    except HpoError as exc:
        print(f"hpo.agent: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
