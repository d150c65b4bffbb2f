"""The slice of RunPod's v2 OpenAPI spec the fake checks request bodies against.

``POST /v2/pods`` answers 422 with one line per violation when a body breaks
the contract, before any rule is looked at; the fake does the same by
validating against these schemas, copied (descriptions and examples dropped)
from ``components.schemas`` of RunPod's ``openapi-v2.json`` (2026-08-20). They
live in a module rather than a data file so the installed package needs no
package data; ``tests/test_fake_runpod.py`` checks they still equal the spec.

The secrets' request bodies (:data:`SECRET_SCHEMAS`) are not in that copy of
the spec: they come from the overlay transcribed from RunPod's docs
(``tests/fake_runpod_support/openapi-v2-secrets.json``), which
``tests/test_runpod_secrets.py`` checks them against. A secret's value must
never come back in an answer, so those bodies are checked with
``quote_values=False``: each violation names the field and the rule broken,
never the value given.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS: dict[str, Any] = {
    "BaseContainerConfig": {
        "type": "object",
        "properties": {
            "args": {"type": "string"},
            "disk": {"type": "integer", "minimum": 1},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "image": {"type": "string"},
            "ports": {"type": "array", "items": {"type": "string"}},
        },
    },
    "BaseCpuConfig": {
        "type": "object",
        "required": ["id", "vcpuCount"],
        "properties": {"id": {"type": "string", "minLength": 1}, "vcpuCount": {"type": "integer", "minimum": 2}},
    },
    "Cloud": {"type": "string", "enum": ["SECURE", "COMMUNITY"]},
    "ContainerConfig": {
        "allOf": [
            {"$ref": "#/components/schemas/BaseContainerConfig"},
            {"type": "object", "properties": {"registry": {"type": ["string", "null"]}}},
        ]
    },
    "CreateCpuConfig": {"allOf": [{"$ref": "#/components/schemas/BaseCpuConfig"}], "unevaluatedProperties": False},
    "CreateGpuConfig": {
        "allOf": [
            {"$ref": "#/components/schemas/GpuConfig"},
            {
                "type": "object",
                "properties": {
                    "allowedCudaVersions": {"type": "array", "items": {"type": "string", "pattern": "^\\d+\\.\\d+$"}},
                    "minCudaVersion": {"type": "string", "pattern": "^\\d+\\.\\d+$"},
                },
            },
        ],
        "unevaluatedProperties": False,
    },
    "CreatePodRequest": {
        "allOf": [
            {"$ref": "#/components/schemas/ContainerConfig"},
            {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "cloud": {"allOf": [{"$ref": "#/components/schemas/Cloud"}], "default": "SECURE"},
                    "cpu": {"$ref": "#/components/schemas/CreateCpuConfig"},
                    "dataCenterIds": {"type": "array", "items": {"type": "string"}},
                    "globalNetworking": {"type": "boolean", "default": False},
                    "gpu": {"$ref": "#/components/schemas/CreateGpuConfig"},
                    "mounts": {"$ref": "#/components/schemas/Mounts"},
                    "startJupyter": {"type": "boolean", "default": False},
                    "startSsh": {"type": "boolean", "default": False},
                    "templateId": {"type": "string", "minLength": 1},
                },
            },
        ],
        "unevaluatedProperties": False,
        "if": {"not": {"required": ["templateId"]}},
        "then": {"required": ["image"]},
    },
    "GpuConfig": {
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "string"}, "count": {"type": "integer", "minimum": 1, "default": 1}},
    },
    "Mounts": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "persistent": {"$ref": "#/components/schemas/PersistentMount"},
            "network": {"type": "array", "maxItems": 1, "items": {"$ref": "#/components/schemas/NetworkMount"}},
        },
    },
    "NetworkMount": {
        "type": "object",
        "required": ["volumeId", "path"],
        "additionalProperties": False,
        "properties": {"volumeId": {"type": "string"}, "path": {"type": "string"}},
    },
    "PersistentMount": {
        "type": "object",
        "required": ["size", "path"],
        "additionalProperties": False,
        "properties": {"size": {"type": "integer", "minimum": 10}, "path": {"type": "string"}},
    },
    "PodAction": {"type": "string", "enum": ["start", "stop", "restart", "terminate"]},
    "PodActionRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["action"],
        "properties": {"action": {"$ref": "#/components/schemas/PodAction"}},
    },
}

"""``components.schemas`` entries, by name, closed under ``$ref``."""

_SECRET_NAME = {"type": "string", "minLength": 1, "maxLength": 191, "pattern": "^[a-zA-Z_][a-zA-Z0-9_.\\-/]*$"}
_SECRET_VALUE = {"type": "string", "minLength": 1, "maxLength": 16777216, "writeOnly": True}
_SECRET_DESCRIPTION = {"type": "string", "maxLength": 65535}

SECRET_SCHEMAS: dict[str, Any] = {
    "CreateSecretRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "value"],
        "properties": {"name": _SECRET_NAME, "value": _SECRET_VALUE, "description": _SECRET_DESCRIPTION},
    },
    "UpdateSecretRequest": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {"value": _SECRET_VALUE, "description": _SECRET_DESCRIPTION},
    },
}
"""The secrets' request bodies, from the docs-transcribed overlay (descriptions and examples dropped)."""

_ALL_SCHEMAS: dict[str, Any] = {**SCHEMAS, **SECRET_SCHEMAS}
_DOCUMENT_URI = "urn:runpod:openapi-v2"
_REGISTRY: Registry = Registry().with_resource(
    _DOCUMENT_URI,
    Resource.from_contents({"components": {"schemas": _ALL_SCHEMAS}}, default_specification=DRAFT202012),
)
_VALIDATORS: dict[str, Draft202012Validator] = {}


def violations(schema_name: str, body: Any, *, quote_values: bool = True) -> list[str]:
    """Every way ``body`` breaks the named schema, as ``"field.path: message"`` lines (empty if valid).

    With ``quote_values`` False no line quotes a value of the body (field names still appear): for
    bodies that carry a secret.
    """
    validator = _VALIDATORS.get(schema_name)
    if validator is None:
        validator = Draft202012Validator(
            {"$ref": f"{_DOCUMENT_URI}#/components/schemas/{schema_name}"}, registry=_REGISTRY
        )
        _VALIDATORS[schema_name] = validator
    errors = sorted(validator.iter_errors(body), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    lines: list[str] = []
    for error in errors:
        line = _describe(error) if quote_values else _describe_unquoted(error)
        if line is not None and line not in lines:
            lines.append(line)
    return lines


# What each rule asks, in words that do not repeat the value that broke it.
_RULES: dict[str, str] = {
    "type": "must be of type {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "pattern": "must match {}",
    "minProperties": "must have at least {} field(s)",
    "maxProperties": "must have at most {} field(s)",
    "enum": "must be one of {}",
    "const": "must be {}",
    "minimum": "must be >= {}",
    "maximum": "must be <= {}",
}


def _describe_unquoted(error: ValidationError) -> str | None:
    """Like :func:`_describe`, but the message says the rule, never the offending value."""
    if error.validator in ("required", "unevaluatedProperties"):
        return _describe(error)  # these name fields, not values
    path = [str(part) for part in error.absolute_path]
    where = ".".join(path) or "(body)"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        declared = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        unknown = sorted(key for key in error.instance if key not in declared)
        return f"{where}: unknown field(s) {', '.join(repr(key) for key in unknown)}"
    rule = _RULES.get(str(error.validator))
    if rule is None:
        return f"{where}: breaks the schema's `{error.validator}` rule"
    return f"{where}: {rule.format(error.validator_value)}"


def _describe(error: ValidationError) -> str | None:
    path = [str(part) for part in error.absolute_path]
    where = ".".join(path) or "(body)"
    if error.validator == "required" and isinstance(error.validator_value, list):
        # Name the missing field itself, so the line reads like the 400s' "field: reason".
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else ""
        if missing:
            return f"{'.'.join([*path, missing])}: required field is missing"
    if error.validator == "unevaluatedProperties" and isinstance(error.instance, dict):
        # JSON Schema drops the annotations of a failing allOf branch, so one bad
        # field makes every declared sibling "unevaluated" too; report only the
        # fields no branch declares, which is what the client got wrong.
        declared = _declared_properties(error.schema)
        unknown = sorted(key for key in error.instance if key not in declared)
        if not unknown:
            return None
        return f"{where}: unknown field(s) {', '.join(repr(key) for key in unknown)}"
    return f"{where}: {error.message}"


def _declared_properties(schema: Any) -> set[str]:
    """Property names a schema declares, through ``allOf`` and ``$ref``."""
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _declared_properties(_ALL_SCHEMAS.get(name))
    names = set(schema.get("properties", {}))
    for branch in schema.get("allOf", []):
        names |= _declared_properties(branch)
    return names
