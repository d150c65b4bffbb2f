"""Check that a journal line is an Optuna journal log before Optuna's replay sees it.

The journal lives on a volume every pod (and every holder of the S3 key) can
write. Optuna's replay (``JournalStorageReplayResult.apply_logs``) trusts each
log: ``{"op_code": 99}``, ``[1]`` or ``{"op_code": 4, "trial_id": "x"}`` make it
raise ``KeyError``, ``TypeError`` or ``AssertionError`` in ``run``, ``status``,
``report`` and the dashboard. So each log is checked here, where it is read,
against what the replay of its operation reads (Optuna's
``optuna/storages/journal/_storage.py``): a JSON object with a known integer
``op_code``, a string ``worker_id`` and the fields that operation needs, of
the types it needs. :func:`log_problem` answers with a short reason or None.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages.journal._storage import JournalOperation
from optuna.study import StudyDirection
from optuna.trial import TrialState

_KNOWN_OPS = frozenset(int(op) for op in JournalOperation)
_STATES = frozenset(int(state) for state in TrialState)
_DIRECTIONS = frozenset(int(direction) for direction in StudyDirection)


class _Bad(ValueError):
    """A log that Optuna's replay would choke on; the message says which field and why."""


def log_problem(entry: Any) -> str | None:
    """Why ``entry`` (one parsed journal line) is not an Optuna journal log, or None if it is one."""
    if _plainly_fine(entry):
        return None
    try:
        _check(entry)
    except _Bad as exc:
        return str(exc)
    return None


def _check(entry: Any) -> None:
    if not isinstance(entry, dict):
        raise _Bad(f"a log is a JSON object, not {_kind(entry)}")
    op = entry.get("op_code")
    if not _is_int(op) or op not in _KNOWN_OPS:
        raise _Bad(f"'op_code' must be one of Optuna's journal operations 0-{max(_KNOWN_OPS)}, not {_show(op)}")
    if op == JournalOperation.DISCARD_TRIALS:
        return  # Optuna's replay skips it without reading anything
    _field(entry, "worker_id", _is_str, "a string")
    _CHECKS[JournalOperation(op)](entry)


def load_line(line: bytes) -> Any:
    """``json.loads(line)``, with the same result and the same exceptions, minus its per-call overhead.

    ``json.loads`` of bytes first guesses the encoding from the first bytes;
    for a line that opens with ``{`` and no NUL after it (every log) the guess
    is UTF-8, so that case is decoded directly; anything else goes through
    ``json.loads`` itself.
    """
    if line[:1] == b"{" and line[1:2] != b"\0":
        return _DECODE(line.decode("utf-8", "surrogatepass"))
    return json.loads(line)


def parse_logs(lines: Sequence[bytes]) -> list[dict[str, Any]] | None:
    """Each line parsed and checked as a log; None if any is not one (the caller falls back to the volume)."""
    logs = []
    for line in lines:
        try:
            entry = load_line(line)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return None
        if not _plainly_fine(entry) and log_problem(entry) is not None:
            return None
        logs.append(entry)
    return logs


# -- the common case, quickly ---------------------------------------------------------------
#
# A study's journal is mostly intermediate values (one per report). The tests below accept
# only logs that :func:`_check` accepts too (they are the same checks, written with exact
# types: a JSON parser makes no subclasses); anything they do not accept, :func:`_check`
# decides, with its message. They never reject, so they add no rule of their own.


def _plainly_fine_intermediate_value(entry: dict[str, Any]) -> bool:
    trial_id = entry.get("trial_id")
    value = entry.get("intermediate_value", _ABSENT)
    return (
        type(entry.get("worker_id")) is str
        and type(trial_id) is int
        and trial_id >= 0
        and type(entry.get("step")) is int
        and (value is None or type(value) is float or type(value) is int)
    )


_ABSENT = object()
_DECODE = json.JSONDecoder().decode
_QUICK: dict[int, Callable[[dict[str, Any]], bool]] = {
    int(JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE): _plainly_fine_intermediate_value,
}


def _plainly_fine(entry: Any) -> bool:
    """True for a log of a common operation that passes every check :func:`_check` makes; False decides nothing."""
    if type(entry) is not dict:
        return False
    op = entry.get("op_code")
    if type(op) is not int:  # a float 7.0 or True would find an entry below: leave them to _check
        return False
    quick = _QUICK.get(op)
    return quick is not None and quick(entry)


# -- per operation -------------------------------------------------------------------------


def _create_study(entry: dict[str, Any]) -> None:
    _field(entry, "study_name", _is_str, "a string")
    directions = _field(entry, "directions", lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list")
    if not all(_is_int(d) and d in _DIRECTIONS for d in directions):
        raise _Bad(f"'directions' must hold study directions {sorted(_DIRECTIONS)}")


def _study_id(entry: dict[str, Any]) -> None:
    _field(entry, "study_id", _is_id, "a non-negative integer")


def _study_attr(name: str) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        _study_id(entry)
        _field(entry, name, _one_entry, "an object with one key")

    return check


def _trial_attr(name: str) -> Callable[[dict[str, Any]], None]:
    def check(entry: dict[str, Any]) -> None:
        _trial_id(entry)
        _field(entry, name, _one_entry, "an object with one key")

    return check


def _trial_id(entry: dict[str, Any]) -> None:
    _field(entry, "trial_id", _is_id, "a non-negative integer")


def _create_trial(entry: dict[str, Any]) -> None:
    _study_id(entry)
    _field(entry, "datetime_start", lambda v: v is None or _is_datetime(v), "null or an ISO date-time")
    if "datetime_complete" in entry:
        _field(entry, "datetime_complete", _is_datetime, "an ISO date-time")
    if "state" in entry:
        _field(entry, "state", lambda v: _is_int(v) and v in _STATES, f"a trial state {sorted(_STATES)}")
    distributions: dict[str, BaseDistribution] = {}
    if "distributions" in entry:
        raw = _field(entry, "distributions", lambda v: isinstance(v, dict), "an object")
        for name, text in raw.items():
            distributions[name] = _distribution(text, f"distributions.{name}")
    if "params" in entry:
        params = _field(entry, "params", lambda v: isinstance(v, dict), "an object")
        for name, value in params.items():
            if name not in distributions:
                raise _Bad(f"'params.{name}' has no distribution")
            _external(distributions[name], value, f"params.{name}")
    for name in ("user_attrs", "system_attrs"):
        if name in entry:
            _field(entry, name, lambda v: isinstance(v, dict), "an object")
    if "value" in entry:
        _field(entry, "value", lambda v: v is None or _is_number(v), "null or a number")
    if "values" in entry:
        _field(entry, "values", _is_values, "null or a list of numbers")
    if "intermediate_values" in entry:
        steps = _field(entry, "intermediate_values", lambda v: isinstance(v, dict), "an object")
        for step, value in steps.items():
            if not _is_int_text(step) or not (value is None or _is_number(value)):
                raise _Bad(f"'intermediate_values' must map integer steps to numbers, not {_show(step)}: {_show(value)}")


def _set_trial_param(entry: dict[str, Any]) -> None:
    _trial_id(entry)
    _field(entry, "param_name", _is_str, "a string")
    value = _field(entry, "param_value_internal", _is_number, "a number")
    distribution = _distribution(entry.get("distribution"), "distribution")
    _external(distribution, value, "param_value_internal")


def _set_trial_state_values(entry: dict[str, Any]) -> None:
    _trial_id(entry)
    state = TrialState(_field(entry, "state", lambda v: _is_int(v) and v in _STATES, f"a trial state {sorted(_STATES)}"))
    if state == TrialState.RUNNING:
        _field(entry, "datetime_start", _is_datetime, "an ISO date-time (the trial runs)")
    if state.is_finished():
        _field(entry, "datetime_complete", _is_datetime, "an ISO date-time (the trial finished)")
    _field(entry, "values", _is_values, "null or a list of numbers")


def _set_trial_intermediate_value(entry: dict[str, Any]) -> None:
    _trial_id(entry)
    _field(entry, "step", _is_int, "an integer")
    _field(entry, "intermediate_value", lambda v: v is None or _is_number(v), "null or a number")


_CHECKS: dict[JournalOperation, Callable[[dict[str, Any]], None]] = {
    JournalOperation.CREATE_STUDY: _create_study,
    JournalOperation.DELETE_STUDY: _study_id,
    JournalOperation.SET_STUDY_USER_ATTR: _study_attr("user_attr"),
    JournalOperation.SET_STUDY_SYSTEM_ATTR: _study_attr("system_attr"),
    JournalOperation.CREATE_TRIAL: _create_trial,
    JournalOperation.SET_TRIAL_PARAM: _set_trial_param,
    JournalOperation.SET_TRIAL_STATE_VALUES: _set_trial_state_values,
    JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE: _set_trial_intermediate_value,
    JournalOperation.SET_TRIAL_USER_ATTR: _trial_attr("user_attr"),
    JournalOperation.SET_TRIAL_SYSTEM_ATTR: _trial_attr("system_attr"),
}


# -- fields --------------------------------------------------------------------------------


def _field(entry: dict[str, Any], name: str, ok: Callable[[Any], bool], what: str) -> Any:
    if name not in entry:
        raise _Bad(f"op {entry['op_code']} needs '{name}'")
    value = entry[name]
    if not ok(value):
        raise _Bad(f"'{name}' must be {what}, not {_show(value)}")
    return value


def _distribution(text: Any, where: str) -> BaseDistribution:
    if not _is_str(text):
        raise _Bad(f"'{where}' must be a distribution in JSON, not {_show(text)}")
    try:
        return _parse_distribution(text)
    except Exception as exc:  # noqa: BLE001  json, KeyError, TypeError, ValueError: all mean "not a distribution"
        raise _Bad(f"'{where}' is not a distribution ({type(exc).__name__})") from None


@functools.lru_cache(maxsize=256)
def _parse_distribution(text: str) -> BaseDistribution:
    # A study repeats a handful of distributions in every trial: parse each text once per process.
    # Only successes are kept (a text that raises is parsed, and refused, every time); the check
    # reads the distribution and never changes it.
    return json_to_distribution(text)


def _external(distribution: BaseDistribution, value: Any, where: str) -> None:
    if not _is_number(value):
        raise _Bad(f"'{where}' must be a number, not {_show(value)}")
    try:
        distribution.to_external_repr(value)
    except Exception:  # noqa: BLE001  a categorical index out of range, say
        raise _Bad(f"'{where}' = {_show(value)} does not fit its distribution") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_values(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(_is_number(v) for v in value))


def _one_entry(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1


def _is_int_text(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value).astimezone()
    except (ValueError, OverflowError, OSError):
        return False
    return True


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
