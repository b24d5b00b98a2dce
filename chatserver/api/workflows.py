"""Handlers for /workflow-conversations and /users/{user_id}/workflow-conversations."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chatserver.api.responses import json_response, next_link, page_limit
from chatserver.appkeys import DB_POOL, SETTINGS, principal
from chatserver.problems import NotFound, ValidationProblem
from chatserver.services.workflows import WHAT, WorkflowConversationManager
from chatserver.validation import parse_int_id, read_json_object


def manager(request: web.Request) -> WorkflowConversationManager:
    """A manager scoped to the key's team; a browser token (one chat conversation) gets 404."""
    who = principal(request)
    if who.conversation_id is not None:
        raise NotFound(WHAT)
    depth = request.app[SETTINGS].server.max_json_depth
    return WorkflowConversationManager(request.app[DB_POOL], who.team_id, max_json_depth=depth)


async def read_body(request: web.Request) -> dict[str, Any]:
    return await read_json_object(request, request.app[SETTINGS].server.max_json_depth)


def running_param(request: web.Request) -> bool:
    value = request.query.get("running", "false")
    if value not in ("true", "false"):
        raise ValidationProblem([("running", "must be true or false")])
    return value == "true"


async def create_workflow_conversation(request: web.Request) -> web.Response:
    service = manager(request)
    created = await service.create_from_body(await read_body(request))
    return json_response(created.to_json(), status=201)


async def get_workflow_conversation(request: web.Request) -> web.Response:
    service = manager(request)
    found = await service.get_workflow_conversation(parse_int_id(request.match_info["id"]))
    if found is None:
        raise NotFound(WHAT)
    return json_response(found.to_json())


async def update_workflow_conversation(request: web.Request) -> web.Response:
    service = manager(request)
    conversation_id = parse_int_id(request.match_info["id"])
    updated = await service.update_workflow_conversation(conversation_id, await read_body(request))
    return json_response(updated.to_json())


async def connect_to_workflow_conversation(request: web.Request) -> web.Response:
    service = manager(request)
    conversation_id = parse_int_id(request.match_info["id"])
    connected = await service.connect_to_workflow_conversation(
        conversation_id, await read_body(request)
    )
    return json_response(connected.to_json())


async def list_user_workflow_conversations(request: web.Request) -> web.Response:
    service = manager(request)
    user_id = parse_int_id(request.match_info["user_id"], "user_id")
    limit = page_limit(request)
    page = await service.page_for_user(
        user_id, running=running_param(request), before=request.query.get("before"), limit=limit
    )
    headers = next_link(request, before=page.next_cursor) if page.next_cursor else None
    return json_response([item.to_json() for item in page.items], headers=headers)
