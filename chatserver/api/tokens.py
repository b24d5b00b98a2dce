"""POST /conversations/{id}/tokens: a browser token for one conversation and one user."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import CONVERSATIONS, SETTINGS, TOKENS, principal
from chatserver.models import iso
from chatserver.validation import Fields, parse_hex_id, read_json_object

USER_MAX = 200


async def create_token(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    settings = request.app[SETTINGS]
    body = await read_json_object(request, settings.server.max_json_depth)
    fields = Fields(body)
    fields.reject_unknown(("user", "ttl"))
    user = fields.string("user", required=True, nullable=False, min_length=1, max_length=USER_MAX)
    ttl = fields.integer("ttl", default=settings.realtime.token_ttl_default, minimum=1,
                         maximum=settings.realtime.token_ttl_max)
    fields.raise_if_invalid()
    row = await request.app[CONVERSATIONS].get_row(principal(request), conversation_id)
    token, expires_at = request.app[TOKENS].issue(conversation_id, user, row["team_id"], ttl)
    return json_response({"token": token, "expires_at": iso(expires_at)}, status=201)
