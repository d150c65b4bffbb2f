"""Why the fake refuses a request, independent of which API (REST v2 or GraphQL) carried it.

The account model raises these; each surface turns them into its own shape
(an RFC 9457 problem with a status for REST, a GraphQL error for GraphQL),
naming the offending field in that surface's own spelling.
"""

from __future__ import annotations

from enum import Enum


class Refusal(Enum):
    """Kinds of refusal; :attr:`status` is the HTTP status REST v2 gives each (RunPod's failure table)."""

    RULE = "rule"  # 400: the body breaks a cross-field rule; try the next candidate
    CAPACITY = "capacity"  # 400: no machine for it now; only the detail text tells it from RULE
    BALANCE = "balance"  # 402: out of money; no candidate will succeed
    FORBIDDEN = "forbidden"  # 403: no access to this pool; skip it
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409: an action the pod's current status does not allow

    @property
    def status(self) -> int:
        """The HTTP status of this refusal on REST v2."""
        return _STATUS[self]


_STATUS = {
    Refusal.RULE: 400,
    Refusal.CAPACITY: 400,
    Refusal.BALANCE: 402,
    Refusal.FORBIDDEN: 403,
    Refusal.NOT_FOUND: 404,
    Refusal.CONFLICT: 409,
}


class Refused(Exception):
    """A request the fake RunPod turns down.

    ``field`` is a neutral name (``gpu_type``, ``gpu_count``, ``volume``,
    ``data_center``, ``cloud``, ``cuda``, ``bid``) that each surface maps to
    its own field path; None when the message stands alone (RunPod's capacity
    texts are matched verbatim by clients, so nothing is prefixed to them).
    """

    def __init__(self, kind: Refusal, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field

    def text(self, field_names: dict[str, str]) -> str:
        """The message, prefixed by the field as this surface spells it."""
        if self.field is None:
            return self.message
        return f"{field_names.get(self.field, self.field)}: {self.message}"
