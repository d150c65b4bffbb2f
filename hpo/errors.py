"""The exception tree of runpod-hpo.

Every error a user can cause or meet derives from :class:`HpoError`; the CLI
turns each into one line on stderr and a non-zero exit code, never a traceback::

    HpoError
    ├── ConfigError          studies.yaml is malformed, or names an unknown study
    ├── VolumeError          the volume cannot be read or written
    │   ├── VolumeNotFoundError   a key is missing on the volume
    │   └── VolumeEscapeError     a key resolves outside the volume's root (a symlink): refused
    ├── JournalError         the study's journal on the volume is inconsistent
    │   └── JournalFencedError    a newer controller took the study over: stop, act on nothing
    ├── LeaseError           another live controller holds the study
    ├── BackendError         a backend could not launch, list or stop trial workers
    │   └── CloudError       RunPod's API refused or failed a call
    │       ├── AuthError            401: the API key is missing or wrong
    │       ├── CapacityError        no capacity for a GPU type (try the next; retry later)
    │       ├── PoolDeniedError      403: the account cannot use that pool (skip it)
    │       ├── BalanceError         402: the balance is out (stop launching)
    │       ├── RequestRejectedError 422 or a rule-breaking 400 (fix the study; never retry)
    │       └── ApiError             anything else (method, path, status, detail)
    │           └── ApiUnavailableError   unreachable, timed out, 5xx/429 through the retries (ride it out)
    │               └── LaunchUnknownError  a create got 5xx/no answer and no lookup answered: the pod may exist
    └── ObjectiveError       an objective cannot be found or imported
"""

from __future__ import annotations


class HpoError(Exception):
    """Base of every error runpod-hpo raises on purpose."""

    exit_code: int = 1


class ConfigError(HpoError):
    """studies.yaml is malformed or names something unknown.

    The message always names the file, and the study and key where known.
    """

    exit_code = 2


class VolumeError(HpoError):
    """The volume could not be read or written."""


class VolumeNotFoundError(VolumeError):
    """A key does not exist on the volume."""

    def __init__(self, volume: str, key: str) -> None:
        super().__init__(f"{volume}: no such key {key!r}")
        self.volume = volume
        self.key = key


class VolumeEscapeError(VolumeError):
    """A key of a folder volume resolves outside the volume's root (through a symlink): refused.

    Anyone who can write the volume can plant a symlink; following it would
    read a system file as an event file, or write a spec outside the volume.
    """

    def __init__(self, volume: str, key: str) -> None:
        super().__init__(f"{volume}: {key}: resolves outside the volume (a symlink?); refused")
        self.volume = volume
        self.key = key


class JournalError(HpoError):
    """The study's journal on the volume is inconsistent."""


class JournalFencedError(JournalError):
    """a controller with a newer epoch took the study over: stop at once, act on nothing"""

    exit_code = 3


class LeaseError(HpoError):
    """Another live controller holds the study's lease."""

    exit_code = 3


class BackendError(HpoError):
    """A backend could not launch, list or stop trial workers."""


class CloudError(BackendError):
    """A call to RunPod's API was refused or failed.

    Keeps what a message and a decision need: the method, path, HTTP status and
    RunPod's ``detail``. Decisions are made by the subclass, never by matching text.
    """

    def __init__(self, message: str, *, method: str = "", path: str = "", status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail


class AuthError(CloudError):
    """The API key is missing, wrong or not allowed to do this."""


class CapacityError(CloudError):
    """RunPod has no capacity for the requested GPU type right now."""


class PoolDeniedError(CloudError):
    """The account cannot use the requested pool (HTTP 403 on create)."""


class BalanceError(CloudError):
    """The account's balance is exhausted (HTTP 402): no create can succeed."""


class RequestRejectedError(CloudError):
    """The request breaks RunPod's contract or a rule (422, or a 400 that is not capacity)."""


class ApiError(CloudError):
    """Any other failure of a RunPod API call."""


class ApiUnavailableError(ApiError):
    """RunPod could not be reached, timed out, or kept answering 5xx/429 through this call's retries.

    Trying again later may succeed: the controller rides it out (pods end
    themselves meanwhile) instead of stopping the study.
    """


class LaunchUnknownError(ApiUnavailableError):
    """A create was answered with a 5xx (or no answer) and no lookup by name has answered since.

    The pod may exist and bill: never create that attempt again until a
    listing has answered (it then shows the pod, or shows that there is none).
    """


class ObjectiveError(HpoError):
    """An objective module cannot be found, imported or called."""
