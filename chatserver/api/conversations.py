"""Handlers for /conversations."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response, next_link, page_limit
from chatserver.appkeys import CONVERSATIONS, PARTICIPANTS, SETTINGS, principal
from chatserver.validation import parse_hex_id, read_json_object


async def create_conversation(request: web.Request) -> web.Response:
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    created = await request.app[CONVERSATIONS].create(principal(request), body)
    body = {k: created[k] for k in ("id", "webhook_secret") if k in created}
    return json_response(body, status=201)


async def get_conversation(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    return json_response(await request.app[CONVERSATIONS].get(principal(request), conversation_id))


async def list_conversations(request: web.Request) -> web.Response:
    limit = page_limit(request)
    participant = request.query.get("participant")
    if participant is not None:  # only theirs, by newest activity, with unread counts
        items, cursor = await request.app[PARTICIPANTS].conversations_of(
            principal(request), participant, request.query.get("before"), limit)
    else:
        items, cursor = await request.app[CONVERSATIONS].list(
            principal(request), request.query.get("before"), limit
        )
    headers = next_link(request, before=cursor) if cursor else None
    return json_response(items, headers=headers)


async def update_conversation(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    updated = await request.app[CONVERSATIONS].update(principal(request), conversation_id, body)
    return json_response(updated)
