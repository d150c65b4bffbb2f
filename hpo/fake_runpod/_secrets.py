"""The account's secrets (REST v2 ``/v2/account/secrets``) and their substitution into a pod's environment.

RunPod keeps account-scoped secrets, referenced from a pod's env values as
``{{ RUNPOD_SECRET_<name> }}`` and substituted when the pod's container boots
(docs.runpod.io ``pods/templates/secrets`` and ``api-reference-v2/account/*``,
Sept 2026). The value is write-only: no answer ever carries it. The fake keeps
values in memory only, never renders or logs them, and substitutes them into
a container's own environment alone; the pod as the API shows it keeps the
placeholder, as RunPod shows the template.

A placeholder naming no secret of the account is left as it is: RunPod does
not document what it does then (it may refuse the pod, or boot it with the
text unchanged); the fake boots it unchanged.
"""

from __future__ import annotations

import random
import re
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from hpo.fake_runpod._clock import FakeClock
from hpo.fake_runpod._errors import Refusal, Refused

SECRET_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.\-/]*")
"""What a secret's name may be (RunPod's pattern ``^[a-zA-Z_][a-zA-Z0-9_.\\-/]*$``)."""
MAX_NAME_CHARS = 191
RESERVED_PREFIX = "RUNPOD"
"""Names beginning with this (in any case) are RunPod's own and refused."""
MAX_VALUE_BYTES = 16 * 1024 * 1024
"""A value must be strictly smaller than this many bytes of UTF-8."""
MAX_DESCRIPTION_BYTES = 65535

PLACEHOLDER = re.compile(r"\{\{\s*RUNPOD_SECRET_([a-zA-Z_][a-zA-Z0-9_.\-/]*)\s*\}\}")
"""``{{ RUNPOD_SECRET_<name> }}`` in an env value, whitespace inside the braces tolerated."""

_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class SecretView:
    """A secret as the API shows it (v2 ``Secret``): everything but the value. Times are fake seconds."""

    id: str
    name: str
    description: str | None
    created_at: float
    value_updated_at: float | None


class SecretStore:
    """The account's secrets, by id; thread-safe. Values stay in a private dict, leaving only by :meth:`substitute`."""

    def __init__(self, clock: FakeClock, seed: int = 0) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._secrets: dict[str, SecretView] = {}
        self._values: dict[str, str] = {}  # id -> value; never rendered, never logged
        self._ids = random.Random(f"{seed}:secrets")  # its own stream: pod ids stay as they were

    def views(self) -> list[SecretView]:
        """Every secret, by name."""
        with self._lock:
            return sorted(self._secrets.values(), key=lambda secret: secret.name)

    def names(self) -> list[str]:
        """The secrets' names, sorted."""
        return [secret.name for secret in self.views()]

    def get(self, secret_id: str) -> SecretView:
        """One secret (:class:`Refused` NOT_FOUND for an unknown id)."""
        with self._lock:
            return self._known(secret_id)

    def create(self, name: str, value: str, description: str | None = None) -> SecretView:
        """Store a new secret; CONFLICT (409) if the name is taken, RULE (400) for a name or value RunPod refuses."""
        _check_name(name)
        _check_value(value)
        _check_description(description)
        with self._lock:
            if any(secret.name == name for secret in self._secrets.values()):
                raise Refused(Refusal.CONFLICT, f"a secret named {name!r} already exists", "name")
            secret_id = self._new_id()
            now = self._clock.now()
            secret = SecretView(secret_id, name, description, created_at=now, value_updated_at=now)
            self._secrets[secret_id] = secret
            self._values[secret_id] = value
            return secret

    def update(self, secret_id: str, *, value: str | None = None, description: str | None = None) -> SecretView:
        """Rotate the value and/or replace the description (None leaves a field as it is)."""
        if value is not None:
            _check_value(value)
        _check_description(description)
        with self._lock:
            secret = self._known(secret_id)
            now = self._clock.now()
            secret = SecretView(
                secret.id,
                secret.name,
                description if description is not None else secret.description,
                secret.created_at,
                now if value is not None else secret.value_updated_at,
            )
            self._secrets[secret_id] = secret
            if value is not None:
                self._values[secret_id] = value
            return secret

    def delete(self, secret_id: str) -> None:
        """Forget a secret and its value (NOT_FOUND for an unknown id)."""
        with self._lock:
            self._known(secret_id)
            del self._secrets[secret_id]
            del self._values[secret_id]

    def substitute(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with every placeholder naming a secret replaced by its current value (unknown names left as is)."""
        with self._lock:
            by_name = {secret.name: self._values[secret.id] for secret in self._secrets.values()}

        def value_of(match: re.Match[str]) -> str:
            return by_name.get(match.group(1), match.group(0))

        return {key: PLACEHOLDER.sub(value_of, text) for key, text in env.items()}

    def _known(self, secret_id: str) -> SecretView:
        secret = self._secrets.get(secret_id)
        if secret is None:
            raise Refused(Refusal.NOT_FOUND, "secret not found")
        return secret

    def _new_id(self) -> str:
        while True:
            secret_id = "".join(self._ids.choice(_ID_ALPHABET) for _ in range(12))
            if secret_id not in self._secrets:
                return secret_id


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not SECRET_NAME.fullmatch(name):
        raise Refused(
            Refusal.RULE,
            f"must be 1 to {MAX_NAME_CHARS} characters, start with a letter or underscore, and hold only "
            "letters, digits and _.-/",
            "name",
        )
    if name.upper().startswith(RESERVED_PREFIX):
        raise Refused(Refusal.RULE, f"names beginning with {RESERVED_PREFIX} (in any case) are reserved", "name")


def _check_value(value: str) -> None:
    # Messages about a value never quote it.
    if not isinstance(value, str) or not value:
        raise Refused(Refusal.RULE, "must be a non-empty string", "value")
    if len(value.encode("utf-8", errors="surrogatepass")) >= MAX_VALUE_BYTES:
        raise Refused(Refusal.RULE, "must be smaller than 16 MiB of UTF-8 text", "value")
    if "\x00" in value:
        # The fake's own rule: it hands values to a local process's environment, which cannot hold NUL.
        raise Refused(Refusal.RULE, "holds a NUL character, which the fake cannot put in an environment", "value")


def _check_description(description: str | None) -> None:
    if description is None:
        return
    if not isinstance(description, str):
        raise Refused(Refusal.RULE, "must be a string", "description")
    if len(description.encode("utf-8", errors="surrogatepass")) > MAX_DESCRIPTION_BYTES:
        raise Refused(Refusal.RULE, f"must be at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8 text", "description")
