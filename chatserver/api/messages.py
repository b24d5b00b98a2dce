"""Handlers for /conversations/{id}/messages."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response, next_link, page_limit
from chatserver.appkeys import MESSAGES, METRICS, PARTICIPANTS, SETTINGS, STREAMS, principal
from chatserver.problems import ValidationProblem
from chatserver.validation import parse_hex_id, query_int, read_json_object


async def post_message(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    service = request.app[MESSAGES]
    who = principal(request)
    seat = await request.app[PARTICIPANTS].seat(who, conversation_id)
    new = service.validate_new(who, conversation_id, body, request.headers.get("Idempotency-Key"),
                               seat=seat)
    if new.stream:
        posted = await request.app[STREAMS].open(who, new)
    else:
        posted = await service.post(who, new)
    if posted.created:
        request.app[METRICS].messages_in.labels("rest").inc()
    headers = None if posted.created else {"Idempotent-Replayed": "true"}
    return json_response(posted.message, status=201, headers=headers)


async def list_messages(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    limit = page_limit(request)
    before = query_int(request, "before")
    after = query_int(request, "after")
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ValidationProblem([("order", "must be asc or desc")])
    ascending = order == "asc"
    page = await request.app[MESSAGES].page(
        principal(request), conversation_id, before=before, after=after, limit=limit,
        ascending=ascending,
    )
    headers = None
    if page.more:
        last_seq = page.messages[-1]["seq"]
        headers = next_link(request, after=last_seq) if ascending else next_link(
            request, before=last_seq)
    return json_response(page.messages, headers=headers)


async def update_message(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    message_id = parse_hex_id(request.match_info["message_id"], "message_id")
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    updated = await request.app[MESSAGES].update(
        principal(request), conversation_id, message_id, body
    )
    return json_response(updated)
