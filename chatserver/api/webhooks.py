"""Handlers for a conversation's webhook: endpoint state, delivery log, redelivery, test, secret."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response, next_link, page_limit
from chatserver.appkeys import WEBHOOKS, principal
from chatserver.validation import parse_hex_id, query_int


async def get_webhook(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    return json_response(await request.app[WEBHOOKS].endpoint(principal(request), conversation_id))


async def enable_webhook(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    return json_response(await request.app[WEBHOOKS].enable(principal(request), conversation_id))


async def rotate_secret(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    rotated = await request.app[WEBHOOKS].rotate_secret(principal(request), conversation_id)
    return json_response(rotated)


async def list_deliveries(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    limit = page_limit(request)
    before = query_int(request, "before", minimum=1)
    items, next_before = await request.app[WEBHOOKS].deliveries(
        principal(request), conversation_id, before, limit
    )
    headers = next_link(request, before=next_before) if next_before else None
    return json_response(items, headers=headers)


async def redeliver(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    delivery_id = parse_hex_id(request.match_info["delivery_id"], "delivery_id")
    delivery = await request.app[WEBHOOKS].redeliver(
        principal(request), conversation_id, delivery_id
    )
    return json_response(delivery)


async def send_test(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    return json_response(await request.app[WEBHOOKS].send_test(principal(request), conversation_id))
