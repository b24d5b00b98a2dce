"""The ceiling of the naive approach: a bare aiohttp broadcast server.

A set of sockets per room at /ws/conversations/{id}; POST /conversations/{id}/messages or a
`{"type": "message", ...}` frame publishes to the room. No persistence, no Redis, no auth: it writes
one frame per socket per message, as most hand-written chat servers do. It speaks the subset of our
protocol the load generator uses (ready, message, ack frames), so the same generator drives both.

    python -m bench.peers.bare_aiohttp --port 8090
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from bench.peers.common import install_uvloop, peer_parser, raise_nofile_limit, stored_message

ROOMS = web.AppKey("rooms", dict)
SEQS = web.AppKey("seqs", defaultdict)


async def broadcast(app: web.Application, conversation_id: str, body: dict[str, Any]) -> dict:
    seq = next(app[SEQS][conversation_id])
    message = stored_message(conversation_id, seq, body)
    frame = orjson.dumps({"type": "message", "message": message}).decode()
    for ws in list(app[ROOMS].get(conversation_id, ())):
        if not ws.closed:
            await ws.send_str(frame)
    return message


async def post_message(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    message = await broadcast(request.app, request.match_info["conversation_id"], body)
    return web.Response(body=orjson.dumps(message), status=201, content_type="application/json")


async def _on_frame(app: web.Application, ws: web.WebSocketResponse, room: str, data: str) -> None:
    frame = orjson.loads(data)
    if frame.get("type") == "message":
        message = await broadcast(app, room, frame)
        ack = {"type": "ack", "client_id": frame.get("client_id"), "message": message}
        await ws.send_str(orjson.dumps(ack).decode())


async def websocket(request: web.Request) -> web.WebSocketResponse:
    room = request.match_info["conversation_id"]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sockets = request.app[ROOMS].setdefault(room, set())
    sockets.add(ws)
    try:
        await ws.send_str(orjson.dumps({"type": "ready", "conversation_id": room}).decode())
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _on_frame(request.app, ws, room, msg.data)
    finally:
        sockets.discard(ws)
    return ws


async def _close_all(app: web.Application) -> None:
    for sockets in app[ROOMS].values():
        for ws in list(sockets):
            await ws.close()


def create_app() -> web.Application:
    app = web.Application()
    app[ROOMS] = {}
    app[SEQS] = defaultdict(lambda: itertools.count(1))
    app.router.add_get("/ws/conversations/{conversation_id}", websocket)
    app.router.add_post("/conversations/{conversation_id}/messages", post_message)
    app.on_shutdown.append(_close_all)
    return app


def main() -> None:
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    raise_nofile_limit()
    install_uvloop(args.uvloop)
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None,
                print=lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
