"""The webhook API's operations: the delivery log, redelivery, test events, secrets, re-enabling.

Every operation first resolves the conversation through ConversationService, so team scoping and
404s work exactly as for the conversation itself. Redelivery and test events are sent at once by
this process, outside the per-endpoint order, and answer with the attempt's outcome.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.config import WebhookSettings
from chatserver.models import WEBHOOK_TEST, iso
from chatserver.problems import Problem, not_found
from chatserver.security.box import SecretBox
from chatserver.services.conversations import ConversationService
from chatserver.store import webhooks as store
from chatserver.webhooks.dispatcher import job_body, job_secrets
from chatserver.webhooks.outbox import event
from chatserver.webhooks.sender import AttemptResult, WebhookSender
from chatserver.webhooks.signing import new_secret


def no_webhook() -> Problem:
    return Problem(409, "this conversation has no config.callback_url", code="no_webhook")


def _when(ts: datetime | None) -> str | None:
    return iso(ts) if ts is not None else None


def endpoint_json(row: Any, pending: int) -> dict[str, Any]:
    return {
        "url": row["url"],
        "enabled": row["disabled_at"] is None,
        "disabled_at": _when(row["disabled_at"]),
        "disabled_reason": row["disabled_reason"],
        "failing_since": _when(row["failing_since"]),
        "previous_secret_expires_at": _when(row["previous_secret_expires_at"]),
        "pending_deliveries": pending,
        "created_at": iso(row["created_at"]),
    }


def attempt_json(row: Any) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "trigger": row["trigger"],
        "status_code": row["status_code"],
        "response_body": row["response_body"],
        "error": row["error"],
        "duration_ms": row["duration_ms"],
        "created_at": iso(row["created_at"]),
    }


def delivery_json(row: Any, attempts: list[Any]) -> dict[str, Any]:
    message = row["payload"].get("data", {}).get("message") or {}
    pending = row["status"] == "pending"
    return {
        "id": row["id"].hex,
        "position": row["position"],
        "event_type": row["event_type"],
        "seq": message.get("seq"),
        "status": row["status"],
        "attempt_count": row["attempt_count"],
        "next_attempt_at": _when(row["next_attempt_at"]) if pending else None,
        "created_at": iso(row["created_at"]),
        "finished_at": _when(row["finished_at"]),
        "payload": row["payload"],
        "attempts": [attempt_json(a) for a in attempts],
    }


class WebhookService:
    def __init__(
        self, pool: asyncpg.Pool, conversations: ConversationService, settings: WebhookSettings,
        sender: WebhookSender, box: SecretBox | None = None,
    ) -> None:
        self.pool = pool
        self.box = box or SecretBox()
        self.conversations = conversations
        self.settings = settings
        self.sender = sender

    async def _conversation(self, principal: Principal, conversation_id: uuid.UUID) -> Any:
        if principal.conversation_id is not None:
            raise not_found()
        return await self.conversations.get_row(principal, conversation_id)

    async def _endpoint(self, conn: Any, conversation_id: uuid.UUID) -> Any:
        row = await store.get_endpoint(conn, conversation_id)
        if row is None:
            raise no_webhook()
        return row

    async def endpoint(self, principal: Principal, conversation_id: uuid.UUID) -> dict[str, Any]:
        await self._conversation(principal, conversation_id)
        async with self.pool.acquire() as conn:
            row = await self._endpoint(conn, conversation_id)
            return endpoint_json(row, await store.count_pending(conn, conversation_id))

    async def enable(self, principal: Principal, conversation_id: uuid.UUID) -> dict[str, Any]:
        await self._conversation(principal, conversation_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._endpoint(conn, conversation_id)
            row = await store.enable_endpoint(conn, conversation_id)
            return endpoint_json(row, await store.count_pending(conn, conversation_id))

    async def rotate_secret(
        self, principal: Principal, conversation_id: uuid.UUID
    ) -> dict[str, Any]:
        await self._conversation(principal, conversation_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._endpoint(conn, conversation_id)
            secret = new_secret()
            row = await store.rotate_secret(
                conn, conversation_id, self.box.seal(secret), self.settings.secret_grace_period
            )
        return {
            "webhook_secret": secret,
            "previous_secret_expires_at": _when(row["previous_secret_expires_at"]),
        }

    async def deliveries(
        self, principal: Principal, conversation_id: uuid.UUID, before: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the log, newest first, and the `before` of the next page (None on the last)."""
        await self._conversation(principal, conversation_id)
        return await self.endpoint_deliveries(conversation_id, before, limit)

    async def endpoint_deliveries(
        self, endpoint_id: uuid.UUID, before: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """`deliveries` of any endpoint (the caller checked it may see it)."""
        async with self.pool.acquire() as conn:
            rows = await store.list_deliveries(conn, endpoint_id, before, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            attempts = await store.list_attempts(conn, [r["id"] for r in rows])
        by_delivery: dict[uuid.UUID, list[Any]] = {}
        for attempt in attempts:
            by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
        items = [delivery_json(r, by_delivery.get(r["id"], [])) for r in rows]
        return items, rows[-1]["position"] if more else None

    async def redeliver(
        self, principal: Principal, conversation_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> dict[str, Any]:
        await self._conversation(principal, conversation_id)
        return await self.redeliver_to(conversation_id, delivery_id)

    async def redeliver_to(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> dict[str, Any]:
        """`redeliver` for any endpoint (the caller checked it may see it)."""
        async with self.pool.acquire() as conn:
            job = await store.get_delivery_job(conn, endpoint_id, delivery_id)
        if job is None:
            raise not_found("webhook delivery")
        if not job["url"]:
            raise no_webhook()
        result = await self.sender.send(job["url"], job["id"].hex, job_body(job),
                                       job_secrets(job, self.box))
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record_manual(conn, delivery_id, result)
            if result.ok:
                await store.settle_manual(conn, delivery_id)
            row = await store.get_delivery(conn, endpoint_id, delivery_id)
            attempts = await store.list_attempts(conn, [delivery_id])
        return delivery_json(row, attempts)

    async def send_test(
        self, principal: Principal, conversation_id: uuid.UUID
    ) -> dict[str, Any]:
        await self._conversation(principal, conversation_id)
        async with self.pool.acquire() as conn:
            endpoint = await self._endpoint(conn, conversation_id)
        if not endpoint["url"]:
            raise no_webhook()
        return await self.test_endpoint(endpoint, {"conversation_id": conversation_id.hex})

    async def test_endpoint(self, endpoint: Any, data: dict[str, Any]) -> dict[str, Any]:
        """Send a signed `webhook.test` event to `endpoint` now, whatever its filter; log it."""
        delivery_id = uuid.uuid4()
        payload = event(WEBHOOK_TEST, datetime.now(UTC), data)
        job = {**endpoint, "id": delivery_id, "payload": payload,
               "previous_secret": _live_previous_secret(endpoint)}
        result = await self.sender.send(endpoint["url"], delivery_id.hex, job_body(job),
                                        job_secrets(job, self.box))
        async with self.pool.acquire() as conn, conn.transaction():
            await store.insert_finished(
                conn, delivery_id, endpoint["id"], endpoint["conversation_id"], WEBHOOK_TEST,
                payload, "succeeded" if result.ok else "failed",
            )
            attempt = await self._record_manual(conn, delivery_id, result)
            row = await store.get_delivery(conn, endpoint["id"], delivery_id)
        return delivery_json(row, [attempt]) | {"success": result.ok}

    @staticmethod
    async def _record_manual(conn: Any, delivery_id: uuid.UUID, result: AttemptResult) -> Any:
        return await store.record_attempt(
            conn, delivery_id, "manual", result.status_code, result.response_body, result.error,
            result.duration_ms,
        )


def _live_previous_secret(endpoint: Any) -> str | None:
    expires = endpoint["previous_secret_expires_at"]
    if expires is not None and expires > datetime.now(UTC):
        return endpoint["previous_secret"]
    return None
