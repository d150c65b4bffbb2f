"""Infrastructure faults inside a worker: the volume or the network failed, not the objective.

A full disk or an unreachable S3 endpoint during ``trial.report`` says nothing
about the trial's hyperparameters, so it must not FAIL the trial: the attempt
ends as retryable, like a preemption, and a new attempt resumes from the last
checkpoint. What decides is *where* the error was raised, not its type alone:
an ``OSError`` from our volume and checkpoint code is a fault of the
infrastructure, while the same ``OSError`` from the objective's own code (its
data file is missing) is the objective's error.

Our code turns such an error into :class:`Interrupted`, a ``BaseException``
(like :class:`~hpo.agent._runner.Preempted`), so an objective's
``except Exception`` cannot swallow it; the original error stays its
``__cause__``. The runner then writes an ``interrupted`` event (best effort:
the volume may be what failed) and exits with :data:`EXIT_INFRA`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hpo.errors import VolumeError
from hpo.events import CAUSE_MAX, one_line

#: The exit code of an attempt an infrastructure fault ended (``EX_TEMPFAIL``: try again later).
EXIT_INFRA = 75

# Network errors from libraries that may sit under a volume without wrapping every
# failure in a VolumeError; matched by module so that none of them need importing.
_NETWORK_MODULES = ("botocore.", "urllib3.", "requests.", "http.client")


class Interrupted(BaseException):
    """An infrastructure fault ended the attempt; the trial may resume in a new one.

    A BaseException, so an objective's ``except Exception`` cannot swallow it.

    Args:
        cause: One line saying what failed, e.g. ``"volume: report at step 3: ...: No space left on device"``.
    """

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def is_infra(exc: BaseException) -> bool:
    """True for the errors that mean "the volume or the network failed" when our own code raised them."""
    if isinstance(exc, (VolumeError, OSError)):
        return True
    return any(cls.__module__.startswith(_NETWORK_MODULES) for cls in type(exc).__mro__)


def _kind(exc: BaseException) -> str:
    """``network`` for a connection or timeout error, ``volume`` for the rest (the disk, the mount, S3's answers)."""
    if isinstance(exc, VolumeError):
        return "volume"
    if isinstance(exc, (ConnectionError, TimeoutError)) or not isinstance(exc, OSError):
        return "network"
    return "volume"


def describe(what: str, exc: BaseException) -> str:
    """The one-line cause for an :class:`Interrupted` raised while doing ``what``."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and not isinstance(exc, VolumeError) and exc.strerror and exc.filename:
        detail = f"{exc.filename}: {exc.strerror}"
    return one_line(f"{_kind(exc)}: {what}: {detail}", CAUSE_MAX)


@contextmanager
def infra(what: str) -> Iterator[None]:
    """Run the body, turning an infrastructure error raised in it into :class:`Interrupted`.

    Wrap only our own volume and checkpoint calls in it, never the objective's
    code: an ``OSError`` the objective raises is the objective's error.
    """
    try:
        yield
    except Exception as exc:
        if not is_infra(exc):
            raise
        raise Interrupted(describe(what, exc)) from exc
