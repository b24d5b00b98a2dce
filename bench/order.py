"""Per-sender order, checked after a run: page each room's history over REST (ascending seq) and
count, per publisher, the messages stored after one it sent later.

The websocket publishers send client_id `<publisher>-<k>` with k counting up from 0, so in seq
order each publisher's k must only grow. A message stored after one sent later is an inversion.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson

from bench.servers import HOST, ServerSide

PAGE = 500  # the server's default [messages] page_max


def history(side: ServerSide, room: str) -> list[dict[str, Any]]:
    """Every message of `room`, in seq order."""
    headers = {"Authorization": f"Bearer {side.token}"}
    messages: list[dict[str, Any]] = []
    after = 0
    while True:
        url = (f"http://{HOST}:{side.ports[0]}/conversations/{room}/messages"
               f"?order=asc&limit={PAGE}&after={after}")
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as resp:
            page = orjson.loads(resp.read())
        messages += page
        if len(page) < PAGE:
            return messages
        after = page[-1]["seq"]


def inversions(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(messages stored after one their publisher sent later, the most places one came late)."""
    latest: dict[str, int] = {}
    late = worst = 0
    for message in messages:
        publisher, _, k = (message.get("client_id") or "").rpartition("-")
        if not publisher or not k.isdigit():
            continue  # warm-up posts carry no client_id
        sent = int(k)
        if sent < latest.get(publisher, -1):
            late += 1
            worst = max(worst, latest[publisher] - sent)
        latest[publisher] = max(sent, latest.get(publisher, -1))
    return late, worst


def check(side: ServerSide, rooms: list[str]) -> dict[str, int]:
    late = worst = stored = 0
    for room in rooms:
        messages = history(side, room)
        stored += len(messages)
        room_late, room_worst = inversions(messages)
        late, worst = late + room_late, max(worst, room_worst)
    return {"inversions": late, "most_places_late": worst, "history_messages": stored}
