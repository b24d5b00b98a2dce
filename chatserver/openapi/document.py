"""Build the OpenAPI 3.1 document from the route table and the operations."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from chatserver import __version__
from chatserver.models import EVENT_TYPES
from chatserver.openapi.operations import OPERATIONS, PATH_PARAMS, Operation
from chatserver.openapi.schemas import SCHEMAS, ref

_PARAM = re.compile(r"{(\w+)}")


def _responses(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.response is not None:
        ok["content"] = {op.content_type: {"schema": op.response}}
    if op.paginated:
        ok["headers"] = {"Link": {"description": 'URL of the next page, rel="next", when more '
                                  "exist.", "schema": {"type": "string"}}}
    responses = {str(op.status): ok}
    for status in op.also:
        responses[str(status)] = {**ok, "description": HTTPStatus(status).phrase}
    for status in _error_statuses(op):
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/problem+json": {"schema": ref("Problem")}},
        }
    if "503" in responses:
        responses["503"]["headers"] = {"Retry-After": {
            "description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
    return responses


def _error_statuses(op: Operation) -> tuple[int, ...]:
    # Authenticating reads Postgres, so every authenticated operation can answer 503 while the
    # database is unreachable (see chatserver.api.middlewares).
    if op.public or 503 in op.errors:
        return op.errors
    return (*op.errors, 503)


def _operation(name: str, path: str, op: Operation) -> dict[str, Any]:
    params = [
        {"name": p, "in": "path", "required": True, "schema": PATH_PARAMS[p]}
        for p in _PARAM.findall(path)
    ]
    params += [dict(q) for q in op.query]
    params += op.extra.get("parameters", [])
    doc: dict[str, Any] = {"operationId": name, "summary": op.summary,
                           "responses": _responses(op)}
    if params:
        doc["parameters"] = params
    if op.request:
        doc["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": ref(op.request)}}}
    if op.public:
        doc["security"] = []
    return doc


def _webhooks() -> dict[str, Any]:
    """OpenAPI 3.1 `webhooks`: one POST per event type, as the receiver gets it."""
    return {
        event_type: {"post": {
            "operationId": "event." + event_type,
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"allOf": [ref("WebhookEvent"), {
                    "properties": {"type": {"const": event_type}}}]}}}},
            "responses": {"2XX": {"description": "Received; anything else is retried "
                                  "(410 disables the endpoint)."}},
            "security": [],
        }}
        for event_type, summary in EVENT_TYPES.items()
    }


def build_document(routes: list[tuple[str, str, Any, str]]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, _handler, name in routes:
        paths.setdefault(path, {})[method.lower()] = _operation(name, path, OPERATIONS[name])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatserver",
            "version": __version__,
            "description": "Real-time chat: REST and websockets on Postgres. Every path is "
            "also served under /api.",
        },
        "paths": paths,
        "webhooks": _webhooks(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
