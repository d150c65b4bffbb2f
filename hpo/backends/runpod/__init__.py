"""The RunPod backend: attempts as (spot) pods, through REST v2 and GraphQL."""

from __future__ import annotations

from hpo.backends.runpod._api import GpuPrice, Pod, PodRequest, RunPodApi, is_capacity_message
from hpo.backends.runpod._backend import RunPodBackend, parse_pod_name, pod_env, pod_name

__all__ = [
    "GpuPrice",
    "Pod",
    "PodRequest",
    "RunPodApi",
    "RunPodBackend",
    "is_capacity_message",
    "parse_pod_name",
    "pod_env",
    "pod_name",
]
