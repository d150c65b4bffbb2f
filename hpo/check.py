"""``hpo check``: what would break or waste money in a study, found before anything is paid for.

Each check is one small function that returns one :class:`CheckLine`: ✓ (ok),
✗ (a problem, with its fix) or ⚠ (a warning: worth knowing, not wrong). The
checks only read: a ``GET`` of pods, volumes and prices, an S3 listing of at
most one key, and the study's own files on the volume.

``hpo check`` prints every line and exits 1 on any ✗; ``hpo run`` runs the same
checks first, prints only the ✗ lines, and stops on a ✗ whose ``blocks_run``
is set: one that would make the run pay for nothing (a key RunPod refuses, a
volume pods cannot mount, a malformed image, ...). A ✗ that may be fine (a
registry credential for what may be a public package) or that the controller
handles itself (the budget) is shown and the run goes on.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpo.backends.local import LocalCompute, LocalVolume
from hpo.backends.runpod import GpuPrice, RunPodApi, RunPodCompute, RunPodVolume
from hpo.config import NopPrunerConfig, StudyConfig, load_study_template, placeholder_problem
from hpo.errors import ApiUnavailableError, AuthError, CloudError, ConfigError, HpoError, RequestRejectedError
from hpo.events import ReportEvent, drain
from hpo.layout import StudyLayout
from hpo.volume import S3Volume, Volume

Status = Literal["ok", "fail", "warn", "skip"]
MARK: Mapping[str, str] = {"ok": "✓", "fail": "✗", "warn": "⚠", "skip": "-"}

GIB = 1024**3

PRUNED_SHARE = 0.5
"""Assumed share of trials a pruner stops (a median pruner cuts about half)."""
PRUNED_AT = 1 / 3
"""Assumed point (share of max_step) where a pruned trial stops."""

ASSUMED_SECONDS_PER_STEP: Mapping[str, float] = {"epoch": 60.0}
"""Seconds per step assumed when the study has no history and no hint: per step_unit, else 1 s."""
DEFAULT_SECONDS_PER_STEP = 1.0

MAX_HISTORY_FILES = 200
"""At most this many attempts' event files are read to measure seconds per step."""

DOCKER_HUB = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# The docker reference grammar (github.com/distribution/reference, regexp.go).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)


@dataclass(frozen=True)
class CheckLine:
    """One line of the check's table."""

    check: str
    status: Status
    detail: str
    fix: str = ""
    blocks_run: bool = False
    """A ✗ that ``hpo run`` stops on: going on would pay for nothing."""

    @property
    def mark(self) -> str:
        return MARK[self.status]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ok(check: str, detail: str) -> CheckLine:
    return CheckLine(check, "ok", detail)


def fail(check: str, detail: str, fix: str, *, blocks_run: bool = True) -> CheckLine:
    return CheckLine(check, "fail", detail, fix, blocks_run=blocks_run)


def warn(check: str, detail: str, fix: str = "") -> CheckLine:
    return CheckLine(check, "warn", detail, fix)


def skip(check: str, detail: str) -> CheckLine:
    return CheckLine(check, "skip", detail)


@dataclass
class _Context:
    """What several checks share: the study, the client (None when the key is missing), prices read."""

    config: StudyConfig
    api: RunPodApi | None = None
    api_works: bool = False
    volume: Volume | None = None
    prices: dict[str, GpuPrice] = field(default_factory=dict)
    seconds_per_step: float | None = None
    history: tuple[list[float], dict[int, int]] | None = None


# ---------------------------------------------------------------- entry points


def check_file(
    studies: Path, name: str, *, env: Mapping[str, str] | None = None, seconds_per_step: float | None = None
) -> list[CheckLine]:
    """Every check of study ``name`` in ``studies``, placeholders included.

    Raises:
        ConfigError: The file cannot be read or the study is unknown (nothing to check).
    """
    lines = [_placeholder_line(studies, name)]  # raises for an unknown study, naming the nearest
    try:
        config = load_study_template(studies, name)
    except ConfigError as exc:
        return [*lines, fail("study", str(exc), "fix the key it names in studies.yaml")]
    return lines + check_study(config, env=env, seconds_per_step=seconds_per_step)


def check_study(
    config: StudyConfig, *, env: Mapping[str, str] | None = None, seconds_per_step: float | None = None
) -> list[CheckLine]:
    """The checks of a loaded study: local lines for a local study, RunPod's for a RunPod one."""
    context = _Context(config, seconds_per_step=seconds_per_step)
    space = [_search_space_line(config)] if config.space_source == "search_space" else []
    if isinstance(config.compute, LocalCompute):
        return [
            ok("compute", "local: trials run as processes on this machine (no RunPod check)"),
            *space,
            _local_volume_line(config),
            _local_estimate_line(config),
        ]
    with _client(env) as (api, problem):
        context.api = api
        lines = [_api_key_line(context, problem), *space]
        lines += _volume_lines(context)
        lines.append(_s3_line(context))
        lines += _image_lines(context)
        lines += _gpu_lines(context)
        lines.append(_checkpoint_space_line(context))
        lines += _estimate_lines(context)
    return lines


def failed(lines: list[CheckLine]) -> bool:
    """Whether any line is a ✗ (``hpo check`` exits 1)."""
    return any(line.status == "fail" for line in lines)


@contextmanager
def _client(env: Mapping[str, str] | None) -> Iterator[tuple[RunPodApi | None, str]]:
    """A RunPod client from the environment (None and the reason when no key is set); closed after."""
    try:
        api = RunPodApi.from_env(env, attempts=2, deadline=15.0, max_wait=2.0)
    except AuthError as exc:
        yield None, str(exc)
        return
    try:
        yield api, ""
    finally:
        api.close()


# ---------------------------------------------------------------- the study file


def _placeholder_line(studies: Path, name: str) -> CheckLine:
    """✗ when a key the user must fill in (image, volume id, ...) still holds an example's placeholder."""
    problem = placeholder_problem(studies, name)
    if problem is not None:
        return fail("placeholders", problem, "put your own value in the key it names")
    return ok("placeholders", "none left in the study")


# ---------------------------------------------------------------- local studies


def _search_space_line(config: StudyConfig) -> CheckLine:
    """A define-by-run study: its module imports here (where ``hpo run`` asks) and ``search_space`` samples.

    The controller imports the objective module's top level and calls
    ``search_space(trial)`` for every new trial; a module whose top level needs
    a library only the trial image has, or a function that raises, would
    otherwise fail the run at its first ask. Sampled once on a throwaway
    in-memory study: nothing touches the study's storage.
    """
    import optuna  # only a define-by-run study pays for the import here

    from hpo.code import load_search_space, sample_search_space

    objectives = config.source.parent / "objectives"
    shown = f"objectives/{config.objective.partition(':')[0]}.py"
    try:
        function = load_search_space(objectives, config.objective)
        study = optuna.create_study(direction=config.direction, sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        sample_search_space(function, trial, config.objective, objectives)
    except HpoError as exc:
        return fail(
            "search space", str(exc),
            "fix search_space(trial); import training libraries inside the objective, not at the module's top",
        )
    names = ", ".join(trial.params) or "no parameters"
    return ok("search space", f"{shown}: search_space(trial) sampled {len(trial.params)} ({names})")


def _local_volume_line(config: StudyConfig) -> CheckLine:
    """A local study's folder: it must be a folder (or not exist yet), not a file."""
    folder = config.volume.path if isinstance(config.volume, LocalVolume) else config.volume.local_path  # type: ignore[attr-defined]
    if folder is None:
        return ok("volume", f"RunPod volume {config.volume.id} over S3 (not checked for a local study)")  # type: ignore[attr-defined]
    if folder.exists() and not folder.is_dir():
        return fail("volume", f"{folder} is a file, not a folder", "point the volume at a folder")
    return ok("volume", f"folder {folder}" + ("" if folder.exists() else " (made on first run)"))


def _local_estimate_line(config: StudyConfig) -> CheckLine:
    """A local study costs no USD; say how many steps it will run."""
    if config.fidelity.max_step is None:
        return ok("estimate", f"local trials cost no USD; {config.budget.trials} trials (no fidelity.max_step: "
                  "their length is not declared)")
    steps = config.budget.trials * config.fidelity.max_step
    return ok("estimate", f"local trials cost no USD; {config.budget.trials} trials × {config.fidelity.max_step} "
              f"{config.fidelity.step_unit}s = {steps} steps at most")


# ---------------------------------------------------------------- the API key


def _api_key_line(context: _Context, problem: str) -> CheckLine:
    """The key works: one cheap authenticated GET (``GET /v2/pods``)."""
    if context.api is None:
        return fail("API key", problem, "export RUNPOD_API_KEY=<a key from RunPod's console: Settings, API Keys>")
    try:
        pods = context.api.list_pods()
    except AuthError as exc:
        return fail("API key", f"RunPod refuses the key: {exc}",
                    "create a key with read/write access in RunPod's console and export it as RUNPOD_API_KEY")
    except ApiUnavailableError as exc:
        return fail("API key", f"cannot reach RunPod: {exc}", "check the network, or try again later", blocks_run=False)
    except CloudError as exc:
        return fail("API key", f"RunPod answered: {exc}", "check RUNPOD_API_KEY and the API URL", blocks_run=False)
    context.api_works = True
    # RunPod reports no scopes for a key; a listing is what this one is known to do.
    return ok("API key", f"works: can list pods ({len(pods)} now); RunPod reports no scopes, "
              "so creating pods is proven only by the first launch")


# ---------------------------------------------------------------- the network volume


def _volume_lines(context: _Context) -> list[CheckLine]:
    """The volume exists, and in the data center the study places pods in."""
    volume = context.config.volume
    assert isinstance(volume, RunPodVolume)
    if context.api is None or not context.api_works:
        return [skip("volume", "not checked: the API key does not work")]
    try:
        volumes = context.api.network_volumes()
    except CloudError as exc:
        return [fail("volume", f"cannot list network volumes: {exc}", "try again later", blocks_run=False)]
    found = next((v for v in volumes if v.get("id") == volume.id), None)
    if found is None:
        known = ", ".join(f"{v.get('id')} ({v.get('data_center')})" for v in volumes) or "none"
        return [fail("volume", f"no network volume {volume.id!r} in this account (it has: {known})",
                     "set volume.id to your network volume's id (RunPod console: Storage)")]
    data_center = found.get("data_center")
    size = found.get("size_gb")
    shown = f"{volume.id} ({found.get('name') or volume.id}, {size if size is not None else '?'} GB) in {data_center}"
    if data_center != volume.data_center:
        return [fail("volume", f"{shown}, not in {volume.data_center} as volume.data_center says "
                     f"(RunPod's dataCenterId for pods that mount it is {data_center})",
                     f"set volume.data_center (and compute.data_centers) to {data_center}")]
    places = getattr(context.config.compute, "data_centers", None) or (volume.data_center,)
    if data_center not in places:
        return [fail("volume", f"{shown}, but compute.data_centers places pods in {', '.join(places)} "
                     "(dataCenterId): they could not mount it", f"set compute.data_centers to [{data_center}]")]
    return [ok("volume", f"{shown}, where the study places its pods")]


def _s3_line(context: _Context) -> CheckLine:
    """The S3 key reaches the volume: a LIST of at most one key (or the folder, with volume.local_path)."""
    volume = context.config.volume
    assert isinstance(volume, RunPodVolume)
    from hpo.controller import open_study_volume  # the controller's own way in

    if volume.local_path is not None:
        if not volume.local_path.is_dir():
            return fail("S3", f"volume.local_path {volume.local_path} is not a folder",
                        "point volume.local_path at the folder the volume is mounted at, or remove it to use S3")
        context.volume = open_study_volume(context.config)
        return ok("S3", f"not needed: volume.local_path {volume.local_path} is a folder")
    try:
        s3 = open_study_volume(context.config)
        assert isinstance(s3, S3Volume)  # no local_path: the S3 API
        s3.probe()  # one request, no pagination: a listing would walk the whole prefix
    except HpoError as exc:  # no credentials, a refused key, no such bucket, no connection
        return fail("S3", f"cannot list s3://{volume.id}: {_one_line(str(exc))}",
                    "check RUNPOD_S3_ACCESS_KEY/RUNPOD_S3_SECRET_KEY (user_… / rps_…), volume.endpoint, and that "
                    "the volume's data center offers the S3 API")
    context.volume = s3
    return ok("S3", f"the S3 key lists s3://{volume.id} at {s3.endpoint}")


# ---------------------------------------------------------------- the image


def image_problem(image: str) -> str | None:
    """What is wrong with an image reference by the docker grammar, or None."""
    match = IMAGE_REFERENCE.fullmatch(image)
    if match is None:
        lower = image.lower()
        if lower != image and IMAGE_REFERENCE.fullmatch(_lower_path(image)):
            return "repository names must be lowercase"
        return "not a docker image reference such as ghcr.io/you/runpod-hpo-trial:0.1.0"
    if len(match.group("name")) > 255:
        return "the repository name is longer than 255 characters"
    return None


def _lower_path(image: str) -> str:
    """``image`` with the path (not the registry host) lowercased, to tell a case error from junk."""
    first, slash, rest = image.partition("/")
    return f"{first}/{rest.lower()}" if slash else image.lower()


def registry_of(image: str) -> str:
    """The registry host an image comes from (``docker.io`` for a name without one)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _image_lines(context: _Context) -> list[CheckLine]:
    """The image is well formed; a private registry's image names a credential (that exists)."""
    compute = context.config.compute
    assert isinstance(compute, RunPodCompute)
    image = compute.image
    problem = image_problem(image)
    if problem is not None:
        return [fail("image", f"compute.image {image!r} (RunPod's imageName): {problem}",
                     "write registry/owner/name:tag in lowercase, e.g. ghcr.io/you/runpod-hpo-trial:0.1.0")]
    return [ok("image", f"{image} is well formed"), _registry_line(context, registry_of(image))]


def _registry_line(context: _Context, registry: str) -> CheckLine:
    """A credential is named for a registry other than Docker Hub, and RunPod knows it."""
    auth = getattr(context.config.compute, "registry_auth", None)  # compute.registry_auth, where the config has it
    if not auth:
        if registry in DOCKER_HUB:
            return ok("registry", "Docker Hub: a public image needs no credential")
        return fail("registry", f"{registry} images (new GHCR packages included) are private unless made public, "
                    "and no compute.registry_auth is set: pods would fail to pull",
                    "add the registry credential in RunPod's console (Settings, Container Registry Auth) and set "
                    "compute.registry_auth to its name or id; or make the package public", blocks_run=False)
    if context.api is None or not context.api_works or not hasattr(context.api, "registries"):
        return ok("registry", f"{registry}: pods pull with credential {auth!r} (not looked up)")
    try:
        known = context.api.registries()
    except CloudError as exc:
        return warn("registry", f"{registry}: credential {auth!r} not looked up: {exc}")
    if auth in known or auth in known.values():
        return ok("registry", f"{registry}: pods pull with credential {auth!r}")
    names = ", ".join(sorted(known)) or "none"
    return fail("registry", f"RunPod has no registry credential {auth!r} (it has: {names})",
                "set compute.registry_auth to one of those names or ids, or add the credential in RunPod's console")


# ---------------------------------------------------------------- GPU types and prices


def _gpu_lines(context: _Context) -> list[CheckLine]:
    """Every GPU type exists at RunPod, with its on-demand and spot price and stock."""
    compute = context.config.compute
    assert isinstance(compute, RunPodCompute)
    if context.api is None or not context.api_works:
        return [skip("GPU types", "not checked: the API key does not work")]
    data_center = context.config.volume.data_center  # type: ignore[attr-defined]
    return [_gpu_line(context, gpu, data_center) for gpu in compute.gpu_types]


def _gpu_line(context: _Context, gpu: str, data_center: str) -> CheckLine:
    """One GPU type: its prices and stock (in the volume's data center when the client prices per data center)."""
    assert context.api is not None
    check = f"GPU {gpu}"
    compute = context.config.compute
    assert isinstance(compute, RunPodCompute)
    per_dc = hasattr(context.api, "spot_price")  # the client prices per data center
    try:
        if per_dc:
            price = context.api.spot_price(gpu, gpu_count=compute.gpu_count, data_center=data_center)
        else:
            price = context.api.gpu_price(gpu)
    except CloudError as exc:
        if isinstance(exc, RequestRejectedError) and "does not know" in str(exc):
            return fail(check, f"RunPod does not know GPU type {gpu!r}",
                        "remove it from compute.gpu_types, or use an id RunPod lists (GraphQL gpuTypes)")
        return fail(check, f"cannot read its price: {exc}", "try again later", blocks_run=False)
    context.prices[gpu] = price
    where = f" in {data_center}" if per_dc else " (Secure Cloud, all data centers)"
    detail = (f"on-demand {_usd(price.on_demand)}/h, spot {_usd(price.spot)}/h (minimum bid {_usd(price.minimum_bid)}), "
              f"stock {price.stock or 'unknown'}{where}")
    if price.on_demand is None and price.spot is None:
        return fail(check, f"not sold in Secure Cloud: {detail}", "choose a GPU type Secure Cloud offers", blocks_run=False)
    if (price.stock or "").lower() == "none":
        return warn(check, detail, "none in stock now: the study waits or moves to its next GPU type")
    return ok(check, detail)


def _usd(value: float | None) -> str:
    return "?" if value is None else f"${value:.3f}"


# ---------------------------------------------------------------- space and cost


def _study_history(context: _Context) -> tuple[list[float], dict[int, int]]:
    """From the study's files on the volume: seconds per step of past attempts, checkpoint bytes per trial."""
    if context.history is None:
        context.history = _read_history(context)
    return context.history


def _read_history(context: _Context) -> tuple[list[float], dict[int, int]]:
    """Read :func:`_study_history`'s figures (one listing of the trials, then events files)."""
    if context.volume is None:
        return [], {}
    layout = StudyLayout(context.config.name)
    try:
        files = context.volume.list(layout.trials_dir)
    except HpoError:
        return [], {}
    checkpoints: dict[int, int] = {}
    events: list[str] = []
    prefix = layout.trials_dir + "/"
    for info in files:
        number, _, rest = info.key.removeprefix(prefix).partition("/")
        if not number.isdigit():
            continue
        if rest.startswith("ckpt/"):
            checkpoints[int(number)] = checkpoints.get(int(number), 0) + info.size
        elif rest.endswith("/events.jsonl"):
            events.append(info.key)
    rates = [rate for key in events[-MAX_HISTORY_FILES:] if (rate := _seconds_per_step(context.volume, key)) is not None]
    return rates, checkpoints


def _seconds_per_step(volume: Volume, key: str) -> float | None:
    """Seconds per step of one attempt, from the timestamps of its first and last reports."""
    try:
        reports = [event for event in drain(volume, key) if isinstance(event, ReportEvent)]
    except HpoError:
        return None
    if len(reports) < 2:
        return None
    first, last = min(reports, key=lambda e: e.step), max(reports, key=lambda e: e.step)
    if last.step <= first.step or last.t <= first.t:
        return None
    return (last.t - first.t) / (last.step - first.step)


def _checkpoint_space_line(context: _Context) -> CheckLine:
    """Free space for the checkpoints: trials × the largest trial's checkpoints so far (they stay on the volume)."""
    _, checkpoints = _study_history(context)
    config = context.config
    if not checkpoints or max(checkpoints.values()) == 0:
        return warn("volume space", "unknown: no trial has written a checkpoint yet, so their size is not known",
                    "after the first trials, run `hpo check` again; RunPod reports no free space, only the size")
    per_trial = max(checkpoints.values())
    needed = per_trial * config.budget.trials
    used = sum(checkpoints.values())
    size_gb = _volume_size_gb(context)
    detail = (f"{config.budget.trials} trials × {per_trial / GIB:.2f} GiB (the largest trial's checkpoints) = "
              f"{needed / GIB:.1f} GiB; {used / GIB:.1f} GiB written so far")
    if size_gb is None:
        return warn("volume space", detail + "; the volume's size is not known")
    if needed > size_gb * 1e9:
        return fail("volume space", f"{detail}, more than the volume's {size_gb} GB",
                    "grow the volume (RunPod console: Storage) or keep fewer checkpoints", blocks_run=False)
    return ok("volume space", f"{detail}, within the volume's {size_gb} GB")


def _volume_size_gb(context: _Context) -> float | None:
    if context.api is None or not context.api_works:
        return None
    try:
        volumes = context.api.network_volumes()
    except CloudError:
        return None
    for volume in volumes:
        if volume.get("id") == context.config.volume.id:  # type: ignore[attr-defined]
            return volume.get("size_gb")
    return None


def _pace(context: _Context) -> tuple[float, str]:
    """Seconds per step and where the figure comes from (measured, given, bounded or assumed)."""
    rates, _ = _study_history(context)
    fidelity = context.config.fidelity
    if rates:
        return statistics.median(rates), f"measured: median of {len(rates)} past attempts' reports"
    if context.seconds_per_step is not None:
        return context.seconds_per_step, "given with --seconds-per-step"
    hint = getattr(fidelity, "seconds_per_step", None)
    if hint:
        return float(hint), "fidelity.seconds_per_step"
    if context.config.budget.max_trial_seconds is not None:
        steps = fidelity.max_step or 1  # set: _estimate_lines asks for a pace only then
        return context.config.budget.max_trial_seconds / steps, "an upper bound: budget.max_trial_seconds / max_step"
    assumed = ASSUMED_SECONDS_PER_STEP.get(fidelity.step_unit, DEFAULT_SECONDS_PER_STEP)
    return assumed, (f"assumed: {assumed:g} s per {fidelity.step_unit} (no history yet; "
                     "pass --seconds-per-step for a better figure)")


def _hourly_price(context: _Context) -> tuple[float | None, str]:
    """USD per GPU-hour of the first GPU type with a price: spot unless the study runs on-demand."""
    compute = context.config.compute
    assert isinstance(compute, RunPodCompute)
    for gpu in compute.gpu_types:
        price = context.prices.get(gpu)
        if price is None:
            continue
        if compute.spot is not False and price.spot is not None:
            return price.spot, f"{gpu} spot"
        if price.on_demand is not None:
            return price.on_demand, f"{gpu} on-demand"
    return None, ""


def pruned_fraction(config: StudyConfig) -> tuple[float, str]:
    """The share of the unpruned steps the study is expected to run, and the assumption behind it."""
    if isinstance(config.pruner, NopPrunerConfig):
        return 1.0, "no pruner: every trial runs to max_step"
    fraction = 1 - PRUNED_SHARE * (1 - PRUNED_AT)
    return fraction, (f"assumed: the {config.pruner.type} pruner stops {PRUNED_SHARE:.0%} of trials at about "
                      f"{PRUNED_AT:.0%} of max_step")


def _estimate_lines(context: _Context) -> list[CheckLine]:
    """The whole study's cost, with and without the pruner's savings, against budget.usd."""
    config = context.config
    compute = config.compute
    assert isinstance(compute, RunPodCompute)
    price, priced = _hourly_price(context)
    if price is None:
        return [skip("estimate", "no price: no GPU type could be priced")]
    trials, max_step = config.budget.trials, config.fidelity.max_step
    if max_step is None:
        return [skip("estimate", "no fidelity.max_step: a trial's length is not declared, so neither is the "
                     "study's cost (budget.usd still stops it)")]
    pace, pace_source = _pace(context)
    gpu_hours = trials * max_step * pace / 3600 * compute.gpu_count
    full = gpu_hours * price
    fraction, assumption = pruned_fraction(config)
    pruned = full * fraction
    detail = (f"{trials} trials × {max_step} {config.fidelity.step_unit}s × {pace:.3g} s ({pace_source}) "
              f"× {compute.gpu_count} GPU × ${price:.3f}/h ({priced}) = ${full:.2f} ({gpu_hours:.1f} GPU-hours) "
              f"without pruning, ${pruned:.2f} with it ({assumption}); pod start-up and retries not included")
    return [CheckLine("estimate", "ok", detail), _budget_line(config, full, pruned)]


def _budget_line(config: StudyConfig, full: float, pruned: float) -> CheckLine:
    """✗ only when even the pruned estimate exceeds budget.usd; ⚠ when only the unpruned one does."""
    budget = config.budget.usd
    if budget is None:
        return warn("budget", f"no budget.usd set: nothing stops the study at ${pruned:.2f} or beyond",
                    "set budget.usd to what you are willing to spend")
    if pruned > budget:
        need = math.ceil(pruned)
        return fail("budget", f"budget.usd ${budget:g} is below even the pruned estimate ${pruned:.2f}: the study "
                    f"would stop at the budget with about {budget / pruned:.0%} of its trials' steps run",
                    f"raise budget.usd to at least {need}, or lower budget.trials or fidelity.max_step",
                    blocks_run=False)
    if full > budget:
        return warn("budget", f"budget.usd ${budget:g} covers the pruned estimate ${pruned:.2f}, not the unpruned ${full:.2f}",
                    "fine if the pruner prunes as assumed; else raise budget.usd")
    return ok("budget", f"budget.usd ${budget:g} covers the estimate (${full:.2f} without pruning)")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
