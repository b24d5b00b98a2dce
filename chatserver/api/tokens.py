"""POST /conversations/{id}/tokens: a token for one conversation and one participant."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import CONVERSATIONS, PARTICIPANTS, SETTINGS, TOKENS, principal
from chatserver.models import iso
from chatserver.services.participants import PARTICIPANT_ID, PARTICIPANT_ID_REASON
from chatserver.validation import Fields, parse_hex_id, read_json_object

TOKEN_KINDS = ("user", "agent")


def _participant(fields: Fields) -> str | None:
    """`participant`, or its older name `user`; both must agree when both are given."""
    given = [k for k in ("participant", "user") if fields.has(k)]
    if not given:
        fields.fail("participant", "is required")
        return None
    values = [fields.string(k, required=True, nullable=False) for k in given]
    if len(set(values)) > 1:
        fields.fail("user", "differs from participant (user is its older name)")
    value = values[0]
    if isinstance(value, str) and PARTICIPANT_ID.fullmatch(value) is None:
        fields.fail(given[0], PARTICIPANT_ID_REASON)
    return value if isinstance(value, str) else None


async def create_token(request: web.Request) -> web.Response:
    conversation_id = parse_hex_id(request.match_info["conversation_id"])
    settings = request.app[SETTINGS]
    body = await read_json_object(request, settings.server.max_json_depth)
    fields = Fields(body)
    fields.reject_unknown(("participant", "user", "kind", "ttl"))
    participant = _participant(fields)
    kind = fields.string("kind", default="user", nullable=False)
    if kind not in TOKEN_KINDS:
        fields.fail("kind", "must be user or agent")
    ttl = fields.integer("ttl", default=settings.realtime.token_ttl_default, minimum=1,
                         maximum=settings.realtime.token_ttl_max)
    fields.raise_if_invalid()
    assert participant is not None
    row = await request.app[CONVERSATIONS].get_row(principal(request), conversation_id)
    agent = kind == "agent"
    await request.app[PARTICIPANTS].ensure(row, participant, agent=agent)
    token, expires_at = request.app[TOKENS].issue(conversation_id, participant, row["team_id"],
                                                  ttl, agent=agent)
    return json_response({"token": token, "expires_at": iso(expires_at)}, status=201)
