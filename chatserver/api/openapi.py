"""GET /openapi.json: the API document (request bodies are checked against it by
`chatserver.api.middlewares.schema_middleware`)."""

from __future__ import annotations

from aiohttp import web

from chatserver.api.responses import json_response
from chatserver.appkeys import OPENAPI_DOCUMENT


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_DOCUMENT])
