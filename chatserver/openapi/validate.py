"""Request-body validation against the documented schemas, before any handler runs."""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from chatserver.openapi.operations import OPERATIONS
from chatserver.openapi.schemas import SCHEMAS

Validators = dict[str, Any]


def compile_validators() -> Validators:
    """Route name -> compiled validator, for every operation that takes a JSON body."""
    return {
        name: jsonschema_rs.validator_for(SCHEMAS[op.request])
        for name, op in OPERATIONS.items()
        if op.request
    }


def _field(path: list[str | int], child: str | None = None) -> str:
    parts = [*path, child] if child is not None else path
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def schema_errors(validator: Any, body: Any) -> list[tuple[str, str]]:
    """(dotted field name, reason) for each way `body` breaks the schema."""
    problems = []
    for error in validator.iter_errors(body):
        path = list(error.instance_path)
        kind = error.kind
        if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
            problems += [(_field(path, key), "unknown field") for key in kind.unexpected]
        elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
            problems.append((_field(path, kind.property), "is required"))
        else:
            problems.append((_field(path), error.message))
    return problems


def check_body(validators: Validators, route: str, body: Any) -> list[tuple[str, str]]:
    return schema_errors(validators[route], body)
