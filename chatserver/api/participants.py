"""Handlers for /conversations/{id}/participants and a participant's read horizon."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import PARTICIPANTS, SETTINGS, principal
from chatserver.validation import parse_hex_id, read_json_object


async def list_participants(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    participants = await request.app[PARTICIPANTS].current(principal(request), conversation_id)
    return json_response(participants)


async def put_participant(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    participant, created = await request.app[PARTICIPANTS].put(
        principal(request), conversation_id, request.match_info["participant_id"], body)
    return json_response(participant, status=201 if created else 200)


async def delete_participant(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    await request.app[PARTICIPANTS].delete(principal(request), conversation_id,
                                           request.match_info["participant_id"])
    return web.Response(status=204)


async def mark_read(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    participant = await request.app[PARTICIPANTS].mark_read(
        principal(request), conversation_id, request.match_info["participant_id"],
        body.get("seq"))
    return json_response(participant)
