"""The ``runpod`` backend: attempts as (spot) pods, through REST v2 and GraphQL.

Offers the client of RunPod's API (:class:`RunPodApi`, the only code that
reads RunPod's JSON, and its types :class:`Pod`, :class:`PodRequest`,
:class:`GpuPrice`, :class:`SecretExistsError`), :class:`RunPodBackend` (launch, list, terminate pods named
by :func:`pod_name`; one-off jobs' pods by :func:`job_pod_name`, warm workers' by :func:`worker_pod_name`, a remote controller's by :func:`controller_pod_name`), its keys in studies.yaml (:class:`RunPodCompute`,
:class:`RunPodVolume`), what the agent does inside a pod (:func:`end_pod`,
:func:`terminate_self`), and ``PLUGIN``, what the registry knows of it.
"""

from __future__ import annotations

from hpo.backends.runpod._api import (
    CandidateRefusedError,
    GpuPrice,
    GraphQLGoneError,
    Pod,
    PodRequest,
    RunPodApi,
    SecretExistsError,
    is_capacity_message,
)
from hpo.backends.runpod._backend import (
    RunPodBackend,
    controller_pod_name,
    job_pod_name,
    parse_job_pod_name,
    parse_pod_name,
    parse_worker_pod_name,
    pod_env,
    pod_name,
    spot_deadline_seconds,
    worker_pod_env,
    worker_pod_name,
)
from hpo.backends.runpod._config import ControllerPod, RunPodCompute, RunPodVolume
from hpo.backends.runpod._in_pod import GRAPHQL_WAY, REST_WAY, end_pod, in_pod, terminate_self
from hpo.backends.runpod._plugin import PLUGIN

__all__ = [
    "GRAPHQL_WAY",
    "PLUGIN",
    "REST_WAY",
    "CandidateRefusedError",
    "ControllerPod",
    "GpuPrice",
    "GraphQLGoneError",
    "Pod",
    "PodRequest",
    "RunPodApi",
    "RunPodBackend",
    "RunPodCompute",
    "RunPodVolume",
    "SecretExistsError",
    "controller_pod_name",
    "end_pod",
    "in_pod",
    "is_capacity_message",
    "job_pod_name",
    "parse_job_pod_name",
    "parse_pod_name",
    "pod_env",
    "parse_worker_pod_name",
    "pod_name",
    "spot_deadline_seconds",
    "terminate_self",
    "worker_pod_env",
    "worker_pod_name",
]
