"""Handlers for a streamed message's deltas, completion and abort
(/conversations/{id}/messages/{message_id}/deltas, /complete, /abort)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import SETTINGS, STREAMS, principal
from chatserver.models import StreamState
from chatserver.validation import parse_hex_id, read_json_object


async def _read(request: web.Request) -> tuple[uuid.UUID, uuid.UUID, dict[str, Any]]:
    """The conversation and message ids from the path, and the JSON body."""
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    message_id = parse_hex_id(request.match_info["message_id"], "message_id")
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    return conversation_id, message_id, body


async def append_deltas(request: web.Request) -> web.Response:
    conversation_id, message_id, body = await _read(request)
    service = request.app[STREAMS]
    deltas = service.validate_deltas(body)
    next_index = await service.append(principal(request), conversation_id, message_id, deltas)
    return json_response({"message_id": message_id.hex, "next_index": next_index})


async def complete_stream(request: web.Request) -> web.Response:
    return await _close(request, StreamState.COMPLETE)


async def abort_stream(request: web.Request) -> web.Response:
    return await _close(request, StreamState.ABORTED)


async def _close(request: web.Request, state: StreamState) -> web.Response:
    conversation_id, message_id, body = await _read(request)
    service = request.app[STREAMS]
    who = principal(request)
    if state is StreamState.COMPLETE:
        message = await service.complete(who, conversation_id, message_id,
                                         service.validate_complete(body))
    else:
        message = await service.abort(who, conversation_id, message_id,
                                      service.validate_abort(body))
    return json_response(message)
