"""GET /openapi.json, and the middleware that checks request bodies against the same document."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import BODY_VALIDATORS, OPENAPI_DOCUMENT, SETTINGS
from chatserver.openapi.validate import check_body
from chatserver.problems import Handler, ValidationProblem
from chatserver.validation import read_json_object


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_DOCUMENT])


@web.middleware
async def schema_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    validators = request.app[BODY_VALIDATORS]
    route = (request.match_info.route.name or "").removeprefix("api.")
    if route in validators:
        body = await read_json_object(request, request.app[SETTINGS].server.max_json_depth)
        problems = check_body(validators, request, body)
        if problems:
            raise ValidationProblem(problems)
    return await handler(request)
