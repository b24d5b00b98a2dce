"""Run rules: create, read, change status (the table in `runstates`), cancel, the stale sweep, the
messages that belong to a run, and the conversation's input policy (`config.on_input_during_run`).

Every change is one transaction: lock the conversation (its last_seq is the change's place on the
timeline), lock the run, check the transition, write it and its webhook row. After the commit the
`RunEvents` port (the hub) is told, and sends a `run.updated` frame ordered after that message.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from chatserver.auth.keys import Principal
from chatserver.config import RunSettings
from chatserver.db.errors import TRANSIENT_ERRORS
from chatserver.models import (
    MESSAGE_COMPLETED,
    MESSAGE_CREATED,
    RUN_CREATED,
    RUN_UPDATED,
    InputDuringRun,
    MessageType,
    RunStatus,
    message_json,
    run_json,
)
from chatserver.problems import Problem, ValidationProblem, not_found
from chatserver.services import cursors
from chatserver.services.inputgate import InputGate
from chatserver.services.runstates import (
    ENDED,
    FAILED,
    QUEUED,
    REQUIRES_ACTION,
    RUNNING,
    check_transition,
    conflict,
)
from chatserver.store import conversations as conversation_store
from chatserver.store import messages as message_store
from chatserver.store import runs as store
from chatserver.store import streams as stream_store
from chatserver.store.messages import NewMessage
from chatserver.validation import Fields
from chatserver.webhooks import outbox

log = logging.getLogger(__name__)

CREATE_FIELDS = ("agent", "input_seq", "metadata")
PATCH_FIELDS = ("status", "error", "activity")
AGENT_MAX = 200
ACTIVITY_MAX = 200
STALE_BATCH = 100
CANCELLED_REASON = "cancelled"  # an open stream of a run whose cancel was requested
SYSTEM = Principal(name="system", team_id=None)  # the server itself (the stale sweep)


class RunEvents(Protocol):
    """Told after each commit (the real-time hub): a port, so this service never imports it."""

    async def message_created(self, message: dict[str, Any]) -> None: ...

    async def message_updated(self, message: dict[str, Any]) -> None: ...

    async def run_updated(self, run: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Change:
    """What one PATCH (or cancel, or the sweep) asks of a run."""

    status: RunStatus | None = None
    error: Any = None
    set_error: bool = False
    activity: str | None = None
    set_activity: bool = False
    cancel: bool = False


def may_drive(principal: Principal, run: Any) -> bool:
    """Who may change a run's status: the server, the team's API keys (team scoping is checked
    when the conversation is locked) and the run's agent (its agent key or agent token); user
    tokens and other agents may not."""
    if principal.agent:
        return principal.participant == run["agent"]
    return not principal.is_token


def run_event(row: Any) -> dict[str, Any]:
    run = run_json(row)
    return {"conversation_id": run["conversation_id"], "run": run}


def decode_cursor(text: str) -> Any:
    return cursors.decode_cursor(text, lambda key: uuid.UUID(hex=key))


class RunService:
    def __init__(self, pool: asyncpg.Pool, settings: RunSettings, events: RunEvents) -> None:
        self.pool = pool
        self.settings = settings
        self.events = events
        self.inputs = InputGate(pool, settings.policy_cache_ttl)

    @staticmethod
    async def lock(conn: Any, principal: Principal, conversation_id: uuid.UUID) -> Any:
        """Lock the conversation (404 unless `principal` may see it): its last_seq and policy."""
        principal.check_conversation(conversation_id)
        timeline = await store.lock_conversation(conn, conversation_id, principal.team_id)
        if timeline is None:
            raise not_found()
        return timeline

    # --- create and read -------------------------------------------------------------------------

    async def create(
        self, principal: Principal, conversation_id: uuid.UUID, body: dict[str, Any]
    ) -> dict[str, Any]:
        if principal.is_token and not principal.agent:
            raise Problem(403, "a user's token may not start runs")
        fields = Fields(body)
        fields.reject_unknown(CREATE_FIELDS)
        # An agent credential starts its own runs (`agent` defaults to it); a key names one.
        agent = fields.string("agent", required=not principal.agent, nullable=False,
                              max_length=AGENT_MAX, min_length=1) or principal.participant
        if principal.agent and agent != principal.participant:
            fields.fail("agent", f"an agent credential starts runs of its own agent "
                                 f"({principal.participant}) only")
        input_seq = fields.integer("input_seq", minimum=1)
        metadata = fields.obj("metadata", default={})
        fields.raise_if_invalid()
        assert isinstance(agent, str)
        async with self.pool.acquire() as conn, conn.transaction():
            timeline = await self.lock(conn, principal, conversation_id)
            if input_seq is not None and input_seq > timeline["last_seq"]:
                raise ValidationProblem([("input_seq", "is above the conversation's last seq "
                                                       f"({timeline['last_seq']})")])
            behind = None
            if timeline["on_input"] == InputDuringRun.ENQUEUE:
                behind = await store.newest_unended(conn, conversation_id)
            row = await store.create_run(conn, conversation_id, agent, input_seq, metadata,
                                         behind, timeline["last_seq"], principal.name)
            await outbox.enqueue_event(conn, RUN_CREATED, conversation_id, row["created_at"],
                                       run_event(row))
        run = run_json(row)
        await self.events.run_updated(run)
        return run

    async def _readable(self, conn: Any, principal: Principal, conversation_id: uuid.UUID) -> None:
        principal.check_conversation(conversation_id)
        if await conversation_store.get_conversation(
                conn, conversation_id, principal.team_id) is None:
            raise not_found()

    async def get(
        self, principal: Principal, conversation_id: uuid.UUID, run_id: uuid.UUID
    ) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            await self._readable(conn, principal, conversation_id)
            row = await store.get_run(conn, conversation_id, run_id)
        if row is None:
            raise not_found("run")
        return run_json(row)

    async def page(
        self, principal: Principal, conversation_id: uuid.UUID, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the conversation's runs, newest first, and the next page's cursor."""
        cursor = decode_cursor(before) if before else None
        async with self.pool.acquire() as conn:
            await self._readable(conn, principal, conversation_id)
            rows = await store.list_runs(conn, conversation_id, cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = cursors.encode_cursor(rows[-1]["created_at"], rows[-1]["id"].hex) \
            if more else None
        return [run_json(r) for r in rows], next_cursor

    async def changed_since(
        self, conversation_id: uuid.UUID, seq: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """For a socket resuming at `seq`: the runs whose last change is at or after it, and the
        action messages answered since, each in timeline order."""
        async with self.pool.acquire() as conn:
            runs = await store.runs_since(conn, conversation_id, seq)
            answered = await store.answered_since(conn, conversation_id, seq)
        return [run_json(r) for r in runs], [message_json(m) for m in answered]

    # --- changes ---------------------------------------------------------------------------------

    async def update(
        self, principal: Principal, conversation_id: uuid.UUID, run_id: uuid.UUID,
        body: dict[str, Any],
    ) -> dict[str, Any]:
        fields = Fields(body)
        fields.reject_unknown(PATCH_FIELDS)
        status = fields.choice("status", RunStatus)
        error = fields.obj("error")
        activity = fields.string("activity", max_length=ACTIVITY_MAX)
        if error is not None and status is not FAILED:
            fields.fail("error", "only with status failed")
        if not any(fields.has(k) for k in PATCH_FIELDS):
            fields.fail("body", "give status, error and/or activity to change")
        fields.raise_if_invalid()
        return await self.change(principal, conversation_id, run_id, Change(
            status, error, fields.has("error"), activity, fields.has("activity")))

    async def cancel(
        self, principal: Principal, conversation_id: uuid.UUID, run_id: uuid.UUID
    ) -> dict[str, Any]:
        return await self.change(principal, conversation_id, run_id, Change(cancel=True))

    async def change(
        self, principal: Principal, conversation_id: uuid.UUID, run_id: uuid.UUID, change: Change
    ) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            timeline = await self.lock(conn, principal, conversation_id)
            run = await store.get_run(conn, conversation_id, run_id, for_update=True)
            if run is None:
                raise not_found("run")
            row = await self._apply(conn, principal, timeline["last_seq"], run, change)
            aborted = await self._abort_streams(conn, run) if change.cancel else []
        result = run_json(row)
        await self.events.run_updated(result)
        for message in aborted:
            await self.events.message_updated(message)
        return result

    @staticmethod
    async def _abort_streams(conn: Any, run: Any) -> list[dict[str, Any]]:
        """A cancel request aborts the run's open streams (reason "cancelled"), in its
        transaction, each with its message.completed webhook."""
        rows = await stream_store.abort_run_streams(conn, run["conversation_id"], run["id"],
                                                    CANCELLED_REASON)
        for row in sorted(rows, key=lambda r: r["seq"]):
            await outbox.enqueue_message_event(conn, MESSAGE_COMPLETED, row)
        return [message_json(r) for r in rows]

    async def _apply(
        self, conn: Any, principal: Principal, seq: int, run: Any, change: Change
    ) -> Any:
        """Check and write one change of a locked run, with its webhook row."""
        current = RunStatus(run["status"])
        if change.cancel:
            if current in ENDED:
                raise conflict(current, f"the run has ended ({current}); nothing to cancel")
            row = await store.request_cancel(conn, run, seq)
            await outbox.enqueue_event(conn, RUN_UPDATED, run["conversation_id"],
                                       row["updated_at"], run_event(row))
            return row
        if not may_drive(principal, run):
            raise Problem(403, "only the run's agent or the team's API keys may change a run")
        new = change.status or current
        check_transition(current, new)
        if current is QUEUED and new is RUNNING and run["queued_behind"] is not None:
            await self._check_turn(conn, run)
        row = await store.update_run(
            conn, run, str(new), seq, error=change.error, set_error=change.set_error,
            activity=change.activity, set_activity=change.set_activity)
        if new != current or change.set_error:  # an activity alone is a frame, not a webhook
            await outbox.enqueue_event(conn, RUN_UPDATED, run["conversation_id"],
                                       row["updated_at"], run_event(row))
        return row

    @staticmethod
    async def _check_turn(conn: Any, run: Any) -> None:
        """`enqueue`: a queued run may start only once the run it queued behind has ended."""
        earlier = await store.get_status(conn, run["queued_behind"])
        if earlier is not None and RunStatus(earlier) not in ENDED:
            raise Problem(
                409, f"the run is queued behind run {run['queued_behind'].hex}, which is "
                     f"{earlier}; it may start once that one has ended", code="queued_behind",
                invalid_params=[("status", f"the run is {QUEUED} behind a {earlier} run")])

    # --- messages of a run -----------------------------------------------------------------------

    async def store_linked(self, new: NewMessage) -> tuple[Any, bool]:
        """Store a message that belongs to a run (the caller checked the author's access): an
        action moves the run to requires_action in the same transaction. (row, created)."""
        assert new.run_id is not None
        async with self.pool.acquire() as conn, conn.transaction():
            timeline = await store.lock_conversation(conn, new.conversation_id, None)
            if timeline is None:
                raise not_found()
            if new.client_id is not None:
                existing = await message_store.get_by_client_id(conn, new.conversation_id,
                                                                new.client_id)
                if existing is not None:
                    return existing, False
            run = await store.get_run(conn, new.conversation_id, new.run_id, for_update=True)
            if run is None:
                raise ValidationProblem([("run_id", "no such run in this conversation")])
            if new.action is not None:
                check_transition(RunStatus(run["status"]), REQUIRES_ACTION)
            row = await message_store.insert_message(conn, new)
            if row is None:
                raise not_found()
            await outbox.enqueue_message_event(conn, MESSAGE_CREATED, row)
            changed = None
            if new.action is not None:
                changed = await self._apply(conn, SYSTEM, row["seq"], run,
                                            Change(status=REQUIRES_ACTION))
        await self.events.message_created(message_json(row))
        if changed is not None:
            await self.events.run_updated(run_json(changed))
        return row, True

    # --- the input policy ------------------------------------------------------------------------

    async def before_input(self, new: NewMessage) -> InputDuringRun:
        """`reject`: 409 run_active for a user's message while a run is queued or running."""
        if new.type != MessageType.USER_INPUT:
            return InputDuringRun.ALLOW
        return await self.inputs.check(new.conversation_id)

    def input_policy_read(self, conversation_id: uuid.UUID, value: str | None) -> None:
        """A policy read on the way (by the statement that stored a message)."""
        self.inputs.remember(conversation_id, value)

    async def after_input(self, policy: InputDuringRun, message: dict[str, Any]) -> None:
        """`interrupt`: the message is stored; cancel is requested on every working run."""
        if policy is not InputDuringRun.INTERRUPT:
            return
        conversation_id = uuid.UUID(hex=message["conversation_id"])
        async with self.pool.acquire() as conn:
            working = await store.working_ids(conn, conversation_id)
        for run_id in working:
            try:
                await self.cancel(SYSTEM, conversation_id, run_id)
            except Problem:  # it ended meanwhile
                continue

    # --- the stale sweep -------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Fail every started run (running, requires_action) whose status has not changed for
        `stale_after` seconds, a batch at a time; how many."""
        stale_after = self.settings.stale_after
        failed = 0
        while True:
            async with self.pool.acquire() as conn:
                candidates = await store.stale_candidates(conn, stale_after, STALE_BATCH)
            failed_now = 0
            for candidate in candidates:
                row = await self._fail_if_stale(candidate["conversation_id"], candidate["id"])
                if row is not None:
                    failed_now += 1
                    await self.events.run_updated(run_json(row))
            failed += failed_now
            # A short batch was the last; a batch failing none was taken by another instance.
            if len(candidates) < STALE_BATCH or not failed_now:
                break
        if failed:
            log.info("failed %d stale runs (no status change for %.0fs)", failed, stale_after)
        return failed

    async def _fail_if_stale(self, conversation_id: uuid.UUID, run_id: uuid.UUID) -> Any:
        stale_after = self.settings.stale_after
        error = {"code": "stale",
                 "message": f"no status change for {stale_after:g} seconds"}
        async with self.pool.acquire() as conn, conn.transaction():
            timeline = await self.lock(conn, SYSTEM, conversation_id)
            run = await store.get_run(conn, conversation_id, run_id, for_update=True)
            # Another instance may have swept it, or its agent moved it, since it was listed.
            if (run is None or RunStatus(run["status"]) not in (RUNNING, REQUIRES_ACTION)
                    or not await store.is_stale(conn, run_id, stale_after)):
                return None
            return await self._apply(conn, SYSTEM, timeline["last_seq"], run,
                                     Change(status=FAILED, error=error, set_error=True))

    async def sweep_loop(self) -> None:
        """The Supervisor's "run-stale-sweep" task (any instance may run it: each run is failed
        under its row lock, once)."""
        while True:
            try:
                await self.sweep()
            except TRANSIENT_ERRORS as exc:
                log.warning("the stale run sweep failed: %r", exc)
            await asyncio.sleep(self.settings.stale_check_interval)
