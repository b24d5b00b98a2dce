"""Handlers for /conversations/{id}/runs and the answer to a message's action."""

from __future__ import annotations

import uuid

from aiohttp import web

from chatserver.api.responses import json_response, next_link, page_limit
from chatserver.appkeys import ACTIONS, RUNS, SETTINGS, principal
from chatserver.validation import parse_hex_id, read_json_object


def _ids(request: web.Request) -> tuple[uuid.UUID, uuid.UUID]:
    return (parse_hex_id(request.match_info["conversation_id"]),
            parse_hex_id(request.match_info["run_id"], "run_id"))


async def create_run(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    run = await request.app[RUNS].create(principal(request), conversation_id, body)
    return json_response(run, status=201)


async def list_runs(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    runs, cursor = await request.app[RUNS].page(
        principal(request), conversation_id, request.query.get("before"), page_limit(request))
    return json_response(runs, headers=next_link(request, before=cursor) if cursor else None)


async def get_run(request: web.Request) -> web.Response:
    return json_response(await request.app[RUNS].get(principal(request), *_ids(request)))


async def update_run(request: web.Request) -> web.Response:
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    conversation_id, run_id = _ids(request)
    run = await request.app[RUNS].update(principal(request), conversation_id, run_id, body)
    return json_response(run)


async def cancel_run(request: web.Request) -> web.Response:
    return json_response(await request.app[RUNS].cancel(principal(request), *_ids(request)))


async def answer_action(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    message_id = parse_hex_id(request.match_info["message_id"], "message_id")
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    message = await request.app[ACTIONS].answer(principal(request), conversation_id, message_id,
                                                body)
    return json_response(message)
