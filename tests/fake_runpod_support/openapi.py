"""Check HTTP exchanges against RunPod's REST v2 OpenAPI spec, so neither the fake nor a client drifts from RunPod.

Use ``CONTRACT.assert_response(response)`` after a ``requests`` call to any
``/v2/...`` path: the status must be one the operation documents (or its
``default``), the content type one it offers for that status, declared headers
well-formed, and the JSON body valid against the schema (JSON Schema 2020-12
via ``jsonschema``, ``$ref`` resolved through ``referencing``, formats such as
``date-time`` checked). ``CONTRACT.request_problems(method, path, body)``
checks what a client is about to send.

RunPod's spec as copied predates some paths the fake serves; each of those
comes as an overlay (``OVERLAY_PATHS``: ``openapi-v2-secrets.json`` for
``/v2/account/secrets``), transcribed from RunPod's docs and merged into the
spec's ``paths`` and ``components`` when it loads. An overlay only adds: a
path or component the spec already has is an error, so an overlay never
hides what RunPod's own spec says once it catches up.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("openapi-v2.json")
OVERLAY_PATHS: tuple[Path, ...] = (Path(__file__).with_name("openapi-v2-secrets.json"),)
"""Fragments transcribed from RunPod's docs for paths the copied spec lacks (each says its source)."""
_SPEC_URI = "urn:runpod:openapi-v2"


def merge_overlay(spec: dict[str, Any], overlay: dict[str, Any], source: str = "an overlay") -> None:
    """Add ``overlay``'s paths and components to ``spec`` in place; anything already there is an error."""
    for template, item in overlay.get("paths", {}).items():
        if template in spec["paths"]:
            raise ValueError(f"{source}: the spec already has path {template}; drop it from the overlay")
        spec["paths"][template] = item
    for section, entries in overlay.get("components", {}).items():
        existing = spec.setdefault("components", {}).setdefault(section, {})
        for name, entry in entries.items():
            if name in existing:
                raise ValueError(f"{source}: the spec already has components.{section}.{name}")
            existing[name] = entry


class OpenApiContract:
    """RunPod's v2 spec, loaded once, answering "does this exchange match?"."""

    def __init__(self, path: Path = SPEC_PATH, overlays: tuple[Path, ...] = OVERLAY_PATHS) -> None:
        self.spec: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        for overlay in overlays:
            merge_overlay(self.spec, json.loads(overlay.read_text(encoding="utf-8")), overlay.name)
        self._registry = Registry().with_resource(
            _SPEC_URI, Resource.from_contents(self.spec, default_specification=DRAFT202012)
        )
        self._validators: dict[str, Draft202012Validator] = {}

    @cached_property
    def _paths(self) -> list[tuple[re.Pattern[str], str]]:
        # Literal segments beat parameters: fewer parameters first.
        templates = sorted(self.spec["paths"], key=lambda t: (t.count("{"), -len(t)))
        return [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", t) + "$"), t) for t in templates]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The path template and operation object serving ``method path`` (KeyError if the spec has none)."""
        path = urlsplit(path).path
        for pattern, template in self._paths:
            if pattern.match(path):
                operation = self.spec["paths"][template].get(method.lower())
                if operation is None:
                    raise KeyError(f"the spec has no {method.upper()} {template}")
                return template, operation
        raise KeyError(f"the spec has no path matching {path}")

    def schema_problems(self, schema: dict[str, Any], instance: Any) -> list[str]:
        """Violations of ``instance`` against a schema that may ``$ref`` into the spec."""
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft202012Validator(
                self._rooted(schema),
                registry=self._registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER,
            )
            self._validators[key] = validator
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(instance)
        ]

    def _rooted(self, schema: dict[str, Any]) -> dict[str, Any]:
        # Make local "#/components/..." refs resolve inside the spec document.
        return json.loads(json.dumps(schema).replace('"#/components/', f'"{_SPEC_URI}#/components/'))

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self._registry.resolver().lookup(node["$ref"].replace("#/", f"{_SPEC_URI}#/", 1)).contents
        return node

    def request_problems(self, method: str, path: str, body: Any) -> list[str]:
        """Violations of a JSON request body against the operation's ``requestBody`` schema."""
        _, operation = self.operation(method, path)
        spec_body = operation.get("requestBody")
        if spec_body is None:
            return [] if body is None else [f"{method} {path} takes no body"]
        schema = spec_body["content"]["application/json"]["schema"]
        return self.schema_problems(schema, body)

    def response_problems(self, method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> list[str]:
        """Everything wrong with a response to ``method path``, as readable lines (empty if it matches)."""
        template, operation = self.operation(method, path)
        responses = operation["responses"]
        spec_response = responses.get(str(status)) or responses.get("default")
        if spec_response is None:
            return [f"{method} {template} does not document status {status}"]
        spec_response = self._resolve(spec_response)
        problems: list[str] = []
        lowered = {k.lower(): v for k, v in headers.items()}
        for name, header in (spec_response.get("headers") or {}).items():
            header = self._resolve(header)
            value = lowered.get(name.lower())
            if value is None:
                if header.get("required") or (status == 429 and name == "Retry-After"):
                    problems.append(f"header {name} missing")
                continue
            schema = header.get("schema", {})
            instance: Any = value
            if schema.get("type") == "integer":
                if not re.fullmatch(r"\d+", value):
                    problems.append(f"header {name}: {value!r} is not an integer")
                    continue
                instance = int(value)
            problems += [f"header {name}: {p}" for p in self.schema_problems(schema, instance)]
        content = spec_response.get("content")
        if not content:
            if body.strip():
                problems.append(f"status {status} must have no body, got {body[:200]!r}")
            return problems
        media_type = lowered.get("content-type", "").split(";")[0].strip()
        if media_type not in content:
            problems.append(f"content type {media_type!r} is not one of {sorted(content)}")
            return problems
        try:
            document = json.loads(body)
        except ValueError:
            return [*problems, f"body is not JSON: {body[:200]!r}"]
        return problems + self.schema_problems(content[media_type]["schema"], document)

    def assert_response(self, response: requests.Response) -> requests.Response:
        """Fail with every mismatch if ``response`` breaks the spec; return it for chaining."""
        request = response.request
        problems = self.response_problems(
            str(request.method), str(request.url), response.status_code, dict(response.headers), response.content
        )
        assert not problems, (
            f"{request.method} {request.url} -> {response.status_code} breaks RunPod's v2 spec:\n  "
            + "\n  ".join(problems)
            + f"\nbody: {response.text[:1000]}"
        )
        return response


CONTRACT = OpenApiContract()
"""The shared, lazily compiled contract (loading the spec takes a moment; do it once per process)."""
