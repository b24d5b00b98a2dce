"""Team-wide webhook endpoints: create (the secret shown once), list, read, change, delete, test,
and their delivery log and redelivery.

A team key reaches its team's endpoints, an admin key every team's (an admin creates one for the
team named by `team_id`, or for conversations without a team); another team's endpoint is 404 like
an unknown one. URLs pass the same SSRF check as a conversation's callback_url.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.config import WebhookSettings
from chatserver.models import iso
from chatserver.problems import Problem, ValidationProblem, not_found
from chatserver.security.box import SecretBox
from chatserver.services import cursors
from chatserver.services.webhooks import WebhookService, endpoint_json
from chatserver.store import webhooks as store
from chatserver.validation import Fields
from chatserver.webhooks.events import filter_problem
from chatserver.webhooks.signing import new_secret
from chatserver.webhooks.ssrf import AddressPolicy

CREATE_FIELDS = ("url", "event_types", "description", "disabled", "team_id")
UPDATE_FIELDS = ("url", "event_types", "description", "disabled")
DISABLED_REASON = "disabled by request"


def team_endpoint_json(row: Any, pending: int) -> dict[str, Any]:
    return {
        "id": row["id"].hex,
        "team_id": row["team_id"],
        "description": row["description"],
        "event_types": list(row["event_types"]),
        "disabled": row["disabled_at"] is not None,
        **endpoint_json(row, pending),
        "updated_at": iso(row["updated_at"]),
    }


class TeamEndpointService:
    def __init__(
        self, pool: asyncpg.Pool, settings: WebhookSettings, webhooks: WebhookService,
        box: SecretBox | None = None,
    ) -> None:
        self.pool = pool
        self.box = box or SecretBox()
        self.settings = settings
        self.webhooks = webhooks
        self.policy = AddressPolicy(settings.allowed_networks)

    # --- reading the body ----------------------------------------------------------------------

    def _url(self, fields: Fields, *, required: bool) -> str | None:
        url = fields.string("url", required=required, nullable=False, min_length=1)
        if url is not None:
            reason = self.policy.check_url(url)
            if reason is not None:
                fields.fail("url", reason)
        return url

    @staticmethod
    def _event_types(fields: Fields, *, required: bool) -> list[str] | None:
        value = fields.data.get("event_types")
        if value is None:
            if required or fields.has("event_types"):
                fields.fail("event_types", "is required: a list of event types")
            return None
        if not isinstance(value, list) or not value:
            fields.fail("event_types", "must be a non-empty list of event types")
            return None
        for i, entry in enumerate(value):
            reason = filter_problem(entry)
            if reason is not None:
                fields.fail(f"event_types[{i}]", reason)
        return list(dict.fromkeys(value))

    def _description(self, fields: Fields) -> str | None:
        return fields.string("description", nullable=False,
                             max_length=self.settings.endpoint_description_max)

    @staticmethod
    def _disabled(fields: Fields) -> bool | None:
        value = fields.data.get("disabled")
        if fields.has("disabled") and not isinstance(value, bool):
            fields.fail("disabled", "must be true or false")
            return None
        return value

    # --- operations ----------------------------------------------------------------------------

    async def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        _keys_only(principal)
        fields = Fields(body)
        fields.reject_unknown(CREATE_FIELDS)
        url = self._url(fields, required=True)
        event_types = self._event_types(fields, required=True)
        description = self._description(fields) or ""
        disabled = self._disabled(fields) or False
        team_id = fields.integer("team_id")
        if principal.team_id is not None:
            if team_id is not None and team_id != principal.team_id:
                fields.fail("team_id", "differs from the API key's team")
            team_id = principal.team_id
        fields.raise_if_invalid()
        assert url is not None and event_types is not None
        secret = new_secret()
        async with self.pool.acquire() as conn, conn.transaction():
            if await store.count_team_endpoints(conn, team_id) >= \
                    self.settings.max_endpoints_per_team:
                raise Problem(409, f"the team has {self.settings.max_endpoints_per_team} "
                                   "webhook endpoints already ([webhooks] "
                                   "max_endpoints_per_team)", code="too_many_endpoints")
            row = await store.create_team_endpoint(conn, team_id, url, self.box.seal(secret),
                                                   event_types, description, disabled)
        return team_endpoint_json(row, 0) | {"secret": secret}

    async def list_page(
        self, principal: Principal, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        _keys_only(principal)
        cursor = cursors.decode_cursor(before, lambda key: uuid.UUID(hex=key)) if before else None
        async with self.pool.acquire() as conn:
            rows = await store.list_team_endpoints(
                conn, principal.team_id, principal.is_admin, cursor, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            items = [team_endpoint_json(r, await store.count_pending(conn, r["id"]))
                     for r in rows]
        next_cursor = cursors.encode_cursor(rows[-1]["created_at"], rows[-1]["id"].hex) \
            if more else None
        return items, next_cursor

    async def _row(self, conn: Any, principal: Principal, endpoint_id: uuid.UUID) -> Any:
        _keys_only(principal)
        row = await store.get_team_endpoint(conn, endpoint_id, principal.team_id,
                                            principal.is_admin)
        if row is None:
            raise not_found("webhook endpoint")
        return row

    async def get(self, principal: Principal, endpoint_id: uuid.UUID) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            row = await self._row(conn, principal, endpoint_id)
            return team_endpoint_json(row, await store.count_pending(conn, endpoint_id))

    async def update(
        self, principal: Principal, endpoint_id: uuid.UUID, body: dict[str, Any]
    ) -> dict[str, Any]:
        fields = Fields(body)
        fields.reject_unknown(UPDATE_FIELDS)
        url = self._url(fields, required=False)
        event_types = self._event_types(fields, required=False)
        description = self._description(fields)
        disabled = self._disabled(fields)
        fields.raise_if_invalid()
        if not body:
            raise ValidationProblem([("body", "give url, event_types, description or disabled")])
        async with self.pool.acquire() as conn, conn.transaction():
            await self._row(conn, principal, endpoint_id)
            row = await store.update_team_endpoint(conn, endpoint_id, url, event_types,
                                                   description)
            if disabled is True:
                row = await store.disable_endpoint(conn, endpoint_id, DISABLED_REASON) or row
            elif disabled is False:
                row = await store.enable_endpoint(conn, endpoint_id)
            return team_endpoint_json(row, await store.count_pending(conn, endpoint_id))

    async def delete(self, principal: Principal, endpoint_id: uuid.UUID) -> None:
        _keys_only(principal)
        async with self.pool.acquire() as conn:
            if not await store.delete_team_endpoint(conn, endpoint_id, principal.team_id,
                                                    principal.is_admin):
                raise not_found("webhook endpoint")

    async def send_test(self, principal: Principal, endpoint_id: uuid.UUID) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            row = await self._row(conn, principal, endpoint_id)
        return await self.webhooks.test_endpoint(row, {"endpoint_id": endpoint_id.hex})

    async def deliveries(
        self, principal: Principal, endpoint_id: uuid.UUID, before: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        async with self.pool.acquire() as conn:
            await self._row(conn, principal, endpoint_id)
        return await self.webhooks.endpoint_deliveries(endpoint_id, before, limit)

    async def redeliver(
        self, principal: Principal, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            await self._row(conn, principal, endpoint_id)
        return await self.webhooks.redeliver_to(endpoint_id, delivery_id)


def _keys_only(principal: Principal) -> None:
    """A browser token (one conversation) never reaches team endpoints."""
    if principal.conversation_id is not None:
        raise not_found("webhook endpoint")
