"""python-socketio as a user would deploy it: AsyncServer on aiohttp with AsyncRedisManager.

One room per conversation. A client joins with `?room=<id>` on the Socket.IO URL and gets
`message` events; POST /conversations/{id}/messages, or a `message` event from a client (answered
with an ack), publishes to the room through Redis, so every instance delivers to its own sockets.

    python -m bench.peers.socketio_server --port 8091 --redis redis://127.0.0.1:6390/0
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
from aiohttp import web

from bench.peers.common import install_uvloop, peer_parser, raise_nofile_limit, stored_message


def create_app(redis_url: str | None) -> web.Application:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager,
                               cors_allowed_origins="*")
    seqs: defaultdict[str, itertools.count] = defaultdict(lambda: itertools.count(1))
    app = web.Application()
    sio.attach(app)

    async def publish(room: str, body: dict[str, Any]) -> dict[str, Any]:
        message = stored_message(room, next(seqs[room]), body)
        await sio.emit("message", {"type": "message", "message": message}, room=room)
        return message

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        room = parse_qs(environ.get("QUERY_STRING", "")).get("room", [None])[0]
        if room is None:
            raise socketio.exceptions.ConnectionRefusedError("give ?room=<id>")
        await sio.save_session(sid, {"room": room})
        await sio.enter_room(sid, room)

    @sio.event
    async def message(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        room = (await sio.get_session(sid))["room"]
        stored = await publish(room, data)
        return {"type": "ack", "client_id": data.get("client_id"), "message": stored}

    async def post_message(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        stored = await publish(request.match_info["conversation_id"], body)
        return web.Response(body=orjson.dumps(stored), status=201,
                            content_type="application/json")

    app.router.add_post("/conversations/{conversation_id}/messages", post_message)
    return app


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--redis", default="", help="Redis URL (empty: in-process manager)")
    args = parser.parse_args()
    raise_nofile_limit()
    install_uvloop(args.uvloop)
    web.run_app(create_app(args.redis or None), host=args.host, port=args.port, access_log=None,
                print=lambda text: print(text, flush=True))


if __name__ == "__main__":
    main()
