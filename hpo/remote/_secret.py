"""The RunPod secret that holds the key a remote controller creates and terminates pods with.

A pod's environment is readable by anyone who can list the account's pods,
and the volume by every pod of the study: the key goes in neither. RunPod
keeps it encrypted as an account secret, and the controller pod's
environment holds only ``{{ RUNPOD_SECRET_<name> }}``, which RunPod fills in
when the container boots (:func:`hpo.remote.secret_placeholder`). ``hpo secret
set`` makes (or replaces) that secret, after asking; ``hpo secret delete``
removes it, which is half of revoking it (the other half: delete the API key
in RunPod's console).
"""

from __future__ import annotations

from hpo.backends.runpod._api import RunPodApi

DESCRIPTION = "runpod-hpo: the API key a study's remote controller creates and terminates pods with (hpo secret set)"


def set_secret(api: RunPodApi, name: str, value: str) -> tuple[str, bool]:
    """Make secret ``name`` hold ``value`` (create it, or replace its value); its id, and whether it was created."""
    known = api.secrets()
    if name in known:
        api.update_secret(known[name], value)
        return known[name], False
    return api.create_secret(name, value, DESCRIPTION), True


def delete_secret(api: RunPodApi, name: str) -> str | None:
    """Delete secret ``name``; its id, or None when the account has no such secret."""
    secret_id = api.secrets().get(name)
    if secret_id is not None:
        api.delete_secret(secret_id)
    return secret_id
