"""A Python client for chatserver (async, on aiohttp): REST calls, a subscription that resumes
where it left off, idempotent sends, and webhook verification.

    async with ChatClient("http://localhost:8080", api_key) as chat:
        created = await chat.create_conversation(channel="API")
        await chat.send(created["id"], "Hello")
        async for event in chat.subscribe(created["id"], since=0):
            if event["type"] == "message":
                print(event["message"]["seq"], event["message"]["content"])

It imports nothing of the server: copy this one file into a project that does not install
chatserver, if you like.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypedDict

import aiohttp
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = logging.getLogger(__name__)

SUBPROTOCOL = "chatserver.v1"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Close codes after which reconnecting cannot help: bad credentials, unknown conversation, a bad
# request, a forbidden origin. Anything else (a restart, 1001, 1006, 1011, 1013) is retried.
FINAL_CLOSE_CODES = frozenset({4400, 4401, 4403, 4404})


class Conversation(TypedDict, total=False):
    id: str
    channel: str
    usecase: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    team_id: int | None
    last_seq: int
    created_at: str
    updated_at: str
    # Only in GET /conversations?participant=...:
    unread_count: int
    last_read_seq: int
    last_message: Message | None


class Created(TypedDict, total=False):
    """What creating a conversation answers: its id, and its webhook secret when it has a
    callback_url (shown only now)."""

    id: str
    webhook_secret: str


class Author(TypedDict):
    """Who wrote a message: kind user, agent, operator, integration or system."""

    id: str
    kind: str
    name: str


class Message(TypedDict, total=False):
    id: str
    conversation_id: str
    seq: int
    client_id: str | None
    content: str
    content_type: str
    filename: str | None
    type: str
    channel: str
    status: str
    metadata: dict[str, Any]
    created_by: str
    author: Author
    created_at: str
    updated_at: str


class ChatError(Exception):
    """The server answered with an RFC 9457 problem: `status`, `problem` (the body)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = dict(problem)


class SubscriptionClosed(Exception):
    """The server closed the socket for a reason reconnecting cannot fix (bad credentials...)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code}: {reason}")
        self.code = code
        self.reason = reason


class Backoff:
    """Capped exponential backoff with full jitter; `reset` after a success."""

    def __init__(self, first: float = 0.25, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2 ** self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class ChatClient:
    """One server and one credential (an API key or a browser token)."""

    def __init__(
        self, base_url: str, credential: str, *, session: aiohttp.ClientSession | None = None,
        retries: int = 5, backoff_cap: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credential = credential
        self.retries = retries
        self.backoff_cap = backoff_cap
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- REST ----------------------------------------------------------------------------------

    async def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None, retry: bool = False,
    ) -> Any:
        """One call; with `retry`, connection failures, 429 and 5xx-unavailable answers are tried
        again after a backoff (only for calls that are safe to repeat)."""
        backoff = Backoff(cap=self.backoff_cap)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not retry
            try:
                async with self.session.request(
                    method, f"{self.base_url}/api{path}", json=json, params=params,
                    headers={"Authorization": f"Bearer {self.credential}", **(headers or {})},
                ) as resp:
                    body = await resp.json(content_type=None) if await resp.read() else None
                    if resp.status < 400:
                        return body
                    if last or resp.status not in RETRY_STATUSES:
                        raise ChatError(resp.status, body or {})
                    wait = resp.headers.get("Retry-After")
            except aiohttp.ClientConnectionError:
                if last:
                    raise
                wait = None
            await asyncio.sleep(float(wait) if wait and wait.isdigit() else backoff.next_delay())
        raise AssertionError("unreachable")

    async def create_conversation(self, **body: Any) -> Created:
        result: Created = await self.request("POST", "/conversations", json=body)
        return result

    async def get_conversation(self, conversation_id: str) -> Conversation:
        result: Conversation = await self.request(
            "GET", f"/conversations/{conversation_id}", retry=True)
        return result

    async def list_messages(
        self, conversation_id: str, *, limit: int | None = None, before: int | None = None,
        after: int | None = None,
    ) -> list[Message]:
        """A page of history, newest first (as the REST API answers)."""
        params = {k: str(v) for k, v in (("limit", limit), ("before", before), ("after", after))
                  if v is not None}
        result: list[Message] = await self.request(
            "GET", f"/conversations/{conversation_id}/messages", params=params, retry=True)
        return result

    async def send(
        self, conversation_id: str, content: str, *, client_id: str | None = None,
        **fields: Any,
    ) -> Message:
        """Post a message exactly once: a `client_id` is generated when not given, so the
        retries after a lost answer or an outage store it once (the server replays the first)."""
        client_id = client_id or uuid.uuid4().hex
        result: Message = await self.request(
            "POST", f"/conversations/{conversation_id}/messages",
            json={"content": content, "client_id": client_id, **fields}, retry=True,
        )
        return result

    async def create_token(self, conversation_id: str, **body: Any) -> dict[str, Any]:
        """A browser token for one conversation (`user`, `ttl`)."""
        result: dict[str, Any] = await self.request(
            "POST", f"/conversations/{conversation_id}/tokens", json=body)
        return result

    def stream(self, conversation_id: str, content: str = "", **fields: Any) -> Stream:
        """An agent's streamed answer, as an async context manager:

            async with chat.stream(conversation_id) as answer:
                async for token in model():
                    await answer.append(token)
            # completed on exit; aborted (reason "error") if the block raised

        Appends are retried like sends; a retry of the same index and text is safe."""
        return Stream(self, conversation_id, content, fields)

    # --- real time -----------------------------------------------------------------------------

    async def subscribe(
        self, conversation_id: str, *, since: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every frame of the conversation's socket (`message`, `message.updated`, `ready`,
        `typing`, ...), reconnecting with capped backoff after a drop and resuming from the last
        `seq` seen: messages come once each, in seq order, none missing. With `since` (0 for the
        whole history) the replay comes first; without it, only what is new from now on."""
        backoff = Backoff(cap=self.backoff_cap)
        cursor = Cursor(since)
        while True:
            url = f"{self.base_url}/api/ws/conversations/{conversation_id}"
            params = {"since": str(cursor.seq)} if cursor.seq is not None else None
            try:
                async with self.session.ws_connect(
                    url, params=params, protocols=(SUBPROTOCOL,), heartbeat=30,
                    headers={"Authorization": f"Bearer {self.credential}"},
                ) as ws:
                    async for frame in _frames(ws):
                        if frame.get("type") == "ready":
                            backoff.reset()
                        if cursor.take(frame):
                            yield frame
                    if ws.close_code in FINAL_CLOSE_CODES:
                        raise SubscriptionClosed(ws.close_code, "refused by the server")
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (401, 403, 404):
                    raise SubscriptionClosed(exc.status, exc.message) from exc
            except aiohttp.ClientConnectionError as exc:
                log.info("subscription to %s dropped: %r", conversation_id, exc)
            await asyncio.sleep(backoff.next_delay())


class Stream:
    """One streamed message being written (see `ChatClient.stream`)."""

    def __init__(self, chat: ChatClient, conversation_id: str, content: str,
                 fields: dict[str, Any]) -> None:
        self.chat = chat
        self.conversation_id = conversation_id
        self.opening = {"content": content, "stream": True,
                        "client_id": fields.pop("client_id", None) or uuid.uuid4().hex, **fields}
        self.message: Message = {}
        self.next_index = 0
        self.completed = False

    @property
    def path(self) -> str:
        return f"/conversations/{self.conversation_id}/messages/{self.message['id']}"

    async def __aenter__(self) -> Stream:
        self.message = await self.chat.request(
            "POST", f"/conversations/{self.conversation_id}/messages", json=self.opening,
            retry=True)
        return self

    async def append(self, *texts: str) -> int:
        """Append deltas (one per text, in order); the stream's next index once durable."""
        deltas = [{"index": self.next_index + n, "text": text} for n, text in enumerate(texts)]
        answer = await self.chat.request("POST", self.path + "/deltas",
                                         json={"deltas": deltas}, retry=True)
        self.next_index = int(answer["next_index"])
        return self.next_index

    async def complete(self, **fields: Any) -> Message:
        """End it (optional `content` replaces the text; `status`, `metadata`)."""
        self.message = await self.chat.request("POST", self.path + "/complete", json=fields,
                                               retry=True)
        self.completed = True
        return self.message

    async def abort(self, reason: str) -> Message:
        self.message = await self.chat.request("POST", self.path + "/abort",
                                               json={"reason": reason}, retry=True)
        self.completed = True
        return self.message

    async def __aexit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        if self.completed or not self.message:
            return
        if exc_type is None:
            await self.complete()
        else:
            await self.abort("error")


class Cursor:
    """The last seq a subscription gave out: where a reconnect resumes, and which replayed
    message frames are already given."""

    def __init__(self, seq: int | None) -> None:
        self.seq = seq

    def take(self, frame: dict[str, Any]) -> bool:
        """Whether to give `frame` out; message frames move the cursor."""
        kind = frame.get("type")
        if kind == "ready" and self.seq is None:
            self.seq = frame["last_seq"]
        elif kind == "message":
            seq = frame["message"]["seq"]
            if self.seq is not None and seq <= self.seq:
                return False
            self.seq = seq
        return True


async def _frames(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            yield msg.json()
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
            return


def verify_webhook(
    headers: Mapping[str, str], body: bytes | str, secret: str
) -> dict[str, Any]:
    """The event of a signed webhook (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
    `webhook-signature`, checked against the `whsec_` secret with a 5-minute tolerance), or
    `WebhookVerificationError` when the signature, the timestamp or the body is wrong."""
    lowered = {k.lower(): v for k, v in headers.items()}
    payload = body.decode() if isinstance(body, bytes) else body
    event: dict[str, Any] = Webhook(secret).verify(payload, lowered)
    return event


__all__ = [
    "ChatClient", "ChatError", "Conversation", "Created", "Message", "Stream", "SubscriptionClosed",
    "WebhookVerificationError", "verify_webhook",
]
