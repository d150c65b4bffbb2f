"""The RunPod backend: attempts as (spot) pods, through REST v2 and GraphQL."""

from __future__ import annotations

from hpo.backends.runpod._api import (
    CandidateRefusedError,
    GpuPrice,
    GraphQLGoneError,
    Pod,
    PodRequest,
    RunPodApi,
    is_capacity_message,
)
from hpo.backends.runpod._backend import RunPodBackend, parse_pod_name, pod_env, pod_name, spot_deadline_seconds

__all__ = [
    "CandidateRefusedError",
    "GpuPrice",
    "GraphQLGoneError",
    "Pod",
    "PodRequest",
    "RunPodApi",
    "RunPodBackend",
    "is_capacity_message",
    "parse_pod_name",
    "pod_env",
    "pod_name",
    "spot_deadline_seconds",
]
