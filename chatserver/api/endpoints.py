"""Handlers for /webhook-endpoints: team-wide webhook endpoints, their test event and log."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response, next_link, page_limit
from chatserver.appkeys import SETTINGS, TEAM_ENDPOINTS, principal
from chatserver.validation import parse_hex_id, query_int, read_json_object


async def create_endpoint(request: web.Request) -> web.Response:
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    created = await request.app[TEAM_ENDPOINTS].create(principal(request), body)
    return json_response(created, status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    limit = page_limit(request)
    items, cursor = await request.app[TEAM_ENDPOINTS].list_page(
        principal(request), request.query.get("before"), limit
    )
    headers = next_link(request, before=cursor) if cursor else None
    return json_response(items, headers=headers)


async def get_endpoint(request: web.Request) -> web.Response:
    endpoint_id = parse_hex_id(request.match_info["endpoint_id"], "endpoint_id")
    return json_response(await request.app[TEAM_ENDPOINTS].get(principal(request), endpoint_id))


async def update_endpoint(request: web.Request) -> web.Response:
    endpoint_id = parse_hex_id(request.match_info["endpoint_id"], "endpoint_id")
    body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
    updated = await request.app[TEAM_ENDPOINTS].update(principal(request), endpoint_id, body)
    return json_response(updated)


async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = parse_hex_id(request.match_info["endpoint_id"], "endpoint_id")
    await request.app[TEAM_ENDPOINTS].delete(principal(request), endpoint_id)
    return web.Response(status=204)


async def test_endpoint(request: web.Request) -> web.Response:
    endpoint_id = parse_hex_id(request.match_info["endpoint_id"], "endpoint_id")
    return json_response(
        await request.app[TEAM_ENDPOINTS].send_test(principal(request), endpoint_id))


async def list_endpoint_deliveries(request: web.Request) -> web.Response:
    endpoint_id = parse_hex_id(request.match_info["endpoint_id"], "endpoint_id")
    limit = page_limit(request)
    before = query_int(request, "before", minimum=1)
    items, next_before = await request.app[TEAM_ENDPOINTS].deliveries(
        principal(request), endpoint_id, before, limit
    )
    headers = next_link(request, before=next_before) if next_before else None
    return json_response(items, headers=headers)


async def redeliver_to_endpoint(request: web.Request) -> web.Response:
    endpoint_id = parse_hex_id(request.match_info["endpoint_id"], "endpoint_id")
    delivery_id = parse_hex_id(request.match_info["delivery_id"], "delivery_id")
    delivery = await request.app[TEAM_ENDPOINTS].redeliver(
        principal(request), endpoint_id, delivery_id
    )
    return json_response(delivery)
