"""JSON responses through orjson, and pagination Link headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def next_link(request: web.Request, **params: str | int) -> dict[str, str]:
    """A `Link: <...>; rel="next"` header: the request's URL with `params` replaced."""
    query = dict(request.query)
    query.update({k: str(v) for k, v in params.items()})
    url = request.url.with_query(query)
    return {"Link": f'<{url.raw_path_qs}>; rel="next"'}
