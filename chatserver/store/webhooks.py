"""SQL for webhooks: endpoints and secrets, the delivery outbox and its claims, the attempt log.

Two kinds of endpoint share one table: a conversation's callback endpoint (its id is the
conversation's id) and a team endpoint (a random id, an `event_types` filter). A delivery belongs
to one endpoint; its queue is (endpoint_id, conversation_id).

A dispatcher claims a delivery by setting `locked_by`/`locked_until` in a short transaction, sends
it with no transaction open, and records the outcome only while its claim still holds. The claim
UPDATEs re-check `status` and `locked_until`, so two dispatchers never both claim one delivery.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

ENDPOINT_COLUMNS = (
    "id, conversation_id, team_id, event_types, description, url, secret, previous_secret, "
    "previous_secret_expires_at, failing_since, disabled_at, disabled_reason, created_at, "
    "updated_at"
)
DELIVERY_COLUMNS = (
    "id, position, endpoint_id, conversation_id, event_type, payload, status, attempt_count, "
    "scheduled_failures, next_attempt_at, locked_until, created_at, finished_at"
)
ATTEMPT_COLUMNS = (
    "delivery_id, attempt, trigger, status_code, response_body, error, duration_ms, created_at"
)
# What a sender needs: the delivery, the endpoint's URL and its signing secrets (and whether the
# endpoint was failing when claimed: only then does a success have a failure streak to end).
JOB_COLUMNS = (
    "d.id, d.endpoint_id, d.conversation_id, d.event_type, d.payload, d.scheduled_failures, "
    "e.url, e.secret, e.failing_since IS NOT NULL AS endpoint_failing, "
    "CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret"
)

# --- endpoints -------------------------------------------------------------------------------

# Creates the endpoint (with its first secret) or points it at a new URL; `inserted` tells which.
UPSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints (id, conversation_id, url, secret) VALUES ($1, $1, $2, $3)
ON CONFLICT (conversation_id) DO UPDATE
SET url = EXCLUDED.url, updated_at = clock_timestamp()
RETURNING (xmax = 0) AS inserted, {ENDPOINT_COLUMNS}
"""
CLEAR_ENDPOINT_URL = """
UPDATE webhook_endpoints SET url = NULL, updated_at = clock_timestamp() WHERE conversation_id = $1
"""
SELECT_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE conversation_id = $1"
ENABLE_ENDPOINT = f"""
UPDATE webhook_endpoints
SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL,
    updated_at = clock_timestamp()
WHERE id = $1
RETURNING {ENDPOINT_COLUMNS}
"""
# A re-enabled endpoint's held queue goes out now rather than after its old backoff.
RESUME_QUEUE = """
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at > now()
"""
DISABLE_ENDPOINT = f"""
UPDATE webhook_endpoints
SET disabled_at = clock_timestamp(), disabled_reason = $2, updated_at = clock_timestamp()
WHERE id = $1 AND disabled_at IS NULL
RETURNING {ENDPOINT_COLUMNS}
"""
ROTATE_SECRET = f"""
UPDATE webhook_endpoints
SET previous_secret = secret, secret = $2,
    previous_secret_expires_at = now() + make_interval(secs => $3),
    updated_at = clock_timestamp()
WHERE id = $1
RETURNING {ENDPOINT_COLUMNS}
"""
ENDPOINT_SUCCEEDED = """
UPDATE webhook_endpoints SET failing_since = NULL
WHERE id = $1 AND failing_since IS NOT NULL
"""
# Seconds the endpoint has been failing without a success in between (0 for a first failure).
ENDPOINT_FAILED = """
UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now())
WHERE id = $1
RETURNING extract(epoch FROM now() - failing_since)::float8
"""

# --- the outbox ------------------------------------------------------------------------------

# One event fans out to its endpoints here, in the event's own transaction: one row per endpoint
# (the conversation's callback endpoint when $5, and each team endpoint whose filter overlaps the
# patterns $4 that match the event type), written by this one statement. Rows per endpoint rather
# than one event row and a cursor per endpoint, because each delivery has its own retries,
# attempts and log entry anyway, and a claim then stays an index probe per queue head: a cursor
# would make every claim filter the team's shared event stream by type. At 50 endpoints that is
# 50 small rows per event, in one INSERT.
#
# Locking the conversation row (posts already hold it) makes every delivery of a conversation
# take its position in commit order, for every endpoint.
ENQUEUE = """
WITH conversation AS (SELECT id, team_id FROM conversations WHERE id = $1 FOR NO KEY UPDATE)
INSERT INTO webhook_deliveries (id, endpoint_id, conversation_id, event_type, payload)
SELECT gen_random_uuid(), e.id, c.id, $2, $3
FROM conversation c CROSS JOIN LATERAL (
    SELECT id FROM webhook_endpoints WHERE conversation_id = c.id AND url IS NOT NULL AND $5
    UNION ALL
    SELECT id FROM webhook_endpoints
    WHERE conversation_id IS NULL AND team_id IS NOT DISTINCT FROM c.team_id
      AND disabled_at IS NULL AND event_types && $4::text[]
) e
ORDER BY e.id
"""
# A batch of the message transaction's events at once, in list order. The conversations are
# already locked by the batch insert of the same transaction (INSERT_MESSAGES), which is what
# ENQUEUE's CTE is for.
ENQUEUE_MANY = """
INSERT INTO webhook_deliveries (id, endpoint_id, conversation_id, event_type, payload)
SELECT gen_random_uuid(), e.id, d.conversation_id, $2, d.payload
FROM unnest($1::uuid[], $3::jsonb[]) WITH ORDINALITY AS d(conversation_id, payload, n)
JOIN conversations c ON c.id = d.conversation_id
CROSS JOIN LATERAL (
    SELECT id FROM webhook_endpoints
    WHERE conversation_id = c.id AND url IS NOT NULL AND $5
    UNION ALL
    SELECT id FROM webhook_endpoints
    WHERE conversation_id IS NULL AND team_id IS NOT DISTINCT FROM c.team_id
      AND disabled_at IS NULL AND event_types && $4::text[]
) e
ORDER BY d.n, e.id
"""

# Which of these conversations have an endpoint for the event (ENQUEUE's two branches). Read
# after the batch insert locked them, in a statement of its own, so a PATCH committed before the
# lock was granted is seen.
SELECT_HOOKED = """
SELECT c.id FROM conversations c
WHERE c.id = ANY($1::uuid[]) AND (
    ($3 AND EXISTS (SELECT FROM webhook_endpoints e
                    WHERE e.conversation_id = c.id AND e.url IS NOT NULL))
    OR EXISTS (SELECT FROM webhook_endpoints e
               WHERE e.conversation_id IS NULL AND e.team_id IS NOT DISTINCT FROM c.team_id
                 AND e.disabled_at IS NULL AND e.event_types && $2::text[]))
"""

# --- claims ----------------------------------------------------------------------------------

# Strict order, step 1: find queues (endpoint, conversation) whose head is due and not in flight
# (in strict order only the head is ever attempted, so a head in backoff or in flight holds that
# queue), walking the queues round robin from the cursor ($2, $3) the previous claim stopped at
# and wrapping around. The walk is a loose index scan (one probe per queue) read lazily: it stops
# once $1 ready heads are found, so a claim costs about as many probes as it claims, not one per
# queue with pending deliveries (50 team endpoints x 50 conversations are 2,500 queues:
# BENCHMARKS.md, performance work 17). No lock here: step 2 picks at most each endpoint's room of
# these (fairness; $4 are the endpoints with no room left) and locks their endpoints (`FOR UPDATE
# SKIP LOCKED`); step 3 claims exactly each head, re-checking it under the lock. A claim runs each
# time a send slot frees; none reads the backlog (BENCHMARKS.md, performance work 13).
READY_QUEUES = """
WITH RECURSIVE after_cursor AS (
    (SELECT endpoint_id, conversation_id FROM webhook_deliveries
     WHERE status = 'pending' AND (endpoint_id, conversation_id) > ($2::uuid, $3::uuid)
     ORDER BY endpoint_id, conversation_id LIMIT 1)
    UNION ALL
    SELECT n.endpoint_id, n.conversation_id FROM after_cursor q CROSS JOIN LATERAL (
        SELECT d.endpoint_id, d.conversation_id FROM webhook_deliveries d
        WHERE d.status = 'pending'
          AND (d.endpoint_id, d.conversation_id) > (q.endpoint_id, q.conversation_id)
        ORDER BY d.endpoint_id, d.conversation_id LIMIT 1) n
),
up_to_cursor AS (
    (SELECT endpoint_id, conversation_id FROM webhook_deliveries
     WHERE status = 'pending' AND (endpoint_id, conversation_id) <= ($2::uuid, $3::uuid)
     ORDER BY endpoint_id, conversation_id LIMIT 1)
    UNION ALL
    SELECT n.endpoint_id, n.conversation_id FROM up_to_cursor q CROSS JOIN LATERAL (
        SELECT d.endpoint_id, d.conversation_id FROM webhook_deliveries d
        WHERE d.status = 'pending'
          AND (d.endpoint_id, d.conversation_id) > (q.endpoint_id, q.conversation_id)
          AND (d.endpoint_id, d.conversation_id) <= ($2::uuid, $3::uuid)
        ORDER BY d.endpoint_id, d.conversation_id LIMIT 1) n
),
queued AS (
    SELECT endpoint_id, conversation_id FROM after_cursor
    UNION ALL
    SELECT endpoint_id, conversation_id FROM up_to_cursor
)
SELECT q.endpoint_id, q.conversation_id FROM queued q
CROSS JOIN LATERAL (
    SELECT h.next_attempt_at, h.locked_until FROM webhook_deliveries h
    WHERE h.endpoint_id = q.endpoint_id AND h.conversation_id = q.conversation_id
      AND h.status = 'pending'
    ORDER BY h.position LIMIT 1) head
JOIN webhook_endpoints e ON e.id = q.endpoint_id
WHERE head.next_attempt_at <= now()
  AND (head.locked_until IS NULL OR head.locked_until <= now())
  AND e.url IS NOT NULL AND e.disabled_at IS NULL
  AND NOT q.endpoint_id = ANY($4::uuid[])  -- endpoints whose share is in flight
LIMIT $1
"""
LOCK_ENDPOINTS = """
SELECT id FROM webhook_endpoints WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE SKIP LOCKED
"""
# Ready queues read per claim slot: a busy endpoint's queues beyond its room are passed over.
READY_PER_SLOT = 4
CLAIM_HEADS = f"""
WITH heads AS (  -- one index probe per queue (webhook_deliveries_queue)
    SELECT h.id FROM unnest($1::uuid[], $2::uuid[]) AS q(endpoint_id, conversation_id)
    CROSS JOIN LATERAL (
        SELECT id FROM webhook_deliveries
        WHERE endpoint_id = q.endpoint_id AND conversation_id = q.conversation_id
          AND status = 'pending'
        ORDER BY position LIMIT 1) h
)
UPDATE webhook_deliveries d
SET locked_by = $3, locked_until = now() + make_interval(secs => $4)
FROM heads, webhook_endpoints e
WHERE d.id = heads.id AND e.id = d.endpoint_id
  AND d.status = 'pending' AND d.next_attempt_at <= now()
  AND (d.locked_until IS NULL OR d.locked_until <= now())
RETURNING {JOB_COLUMNS}
"""
# Best effort: any due deliveries, longest due first, several per endpoint at once (at most its
# room, as in strict order, among the oldest CLAIM_CANDIDATES due rows). Ordered by
# next_attempt_at, whose partial index (webhook_deliveries_due) holds pending rows only.
CLAIM_CANDIDATES = 1000
CLAIM_DUE = f"""
WITH candidates AS (
    SELECT d.id, d.next_attempt_at,
           row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at) AS rank,
           coalesce(busy.room, $6) AS room
    FROM (SELECT id, endpoint_id, next_attempt_at FROM webhook_deliveries
          WHERE status = 'pending' AND next_attempt_at <= now()
            AND (locked_until IS NULL OR locked_until <= now())
          ORDER BY next_attempt_at LIMIT {CLAIM_CANDIDATES}) d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id
    LEFT JOIN unnest($4::uuid[], $5::int[]) AS busy(endpoint_id, room)
        ON busy.endpoint_id = d.endpoint_id
    WHERE e.url IS NOT NULL AND e.disabled_at IS NULL
),
due AS (
    SELECT d.id FROM webhook_deliveries d JOIN candidates c ON c.id = d.id
    WHERE c.rank <= c.room AND d.status = 'pending'
      AND (d.locked_until IS NULL OR d.locked_until <= now())
    ORDER BY c.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET locked_by = $2, locked_until = now() + make_interval(secs => $3)
FROM due, webhook_endpoints e
WHERE d.id = due.id AND e.id = d.endpoint_id
RETURNING {JOB_COLUMNS}
"""
RELEASE_CLAIMS = """
UPDATE webhook_deliveries SET locked_by = NULL, locked_until = NULL
WHERE locked_by = $1 AND status = 'pending'
"""

# --- outcomes --------------------------------------------------------------------------------

RECORD_ATTEMPT = f"""
WITH bumped AS (
    UPDATE webhook_deliveries SET attempt_count = attempt_count + 1 WHERE id = $1
    RETURNING attempt_count
)
INSERT INTO webhook_attempts (delivery_id, attempt, trigger, status_code, response_body, error,
                              duration_ms)
SELECT $1, attempt_count, $2, $3, $4, $5, $6 FROM bumped
RETURNING {ATTEMPT_COLUMNS}
"""
# A scheduled attempt's outcome and its log entry in one statement (one new version of the
# delivery row), applied only while this dispatcher's claim holds: nothing is written otherwise.
FINISH_SCHEDULED = """
WITH finished AS (
    UPDATE webhook_deliveries
    SET attempt_count = attempt_count + 1, status = $3,
        next_attempt_at = now() + make_interval(secs => $4),
        scheduled_failures = scheduled_failures + $5, locked_by = NULL, locked_until = NULL,
        finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE clock_timestamp() END
    WHERE id = $1 AND locked_by = $2 AND status = 'pending'
    RETURNING attempt_count
)
INSERT INTO webhook_attempts (delivery_id, attempt, trigger, status_code, response_body, error,
                              duration_ms)
SELECT $1, attempt_count, 'scheduled', $6, $7, $8, $9 FROM finished
"""
# A manual attempt that succeeded settles the delivery (and so releases the queue behind it).
SETTLE_MANUAL = """
UPDATE webhook_deliveries
SET status = 'succeeded', finished_at = clock_timestamp(), locked_by = NULL, locked_until = NULL
WHERE id = $1 AND status <> 'succeeded'
"""
INSERT_FINISHED = f"""
INSERT INTO webhook_deliveries (id, endpoint_id, conversation_id, event_type, payload, status,
                                finished_at)
VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())
RETURNING {DELIVERY_COLUMNS}
"""

# --- the log ---------------------------------------------------------------------------------

SELECT_DELIVERY_JOB = f"""
SELECT {JOB_COLUMNS} FROM webhook_deliveries d
JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.endpoint_id = $1 AND d.id = $2
"""
SELECT_DELIVERY = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 AND id = $2
"""
SELECT_DELIVERIES_PAGE = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR position < $2)
ORDER BY position DESC
LIMIT $3
"""
SELECT_ATTEMPTS = f"""
SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts
WHERE delivery_id = ANY($1::uuid[])
ORDER BY delivery_id, attempt
"""
COUNT_PENDING = """
SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'
"""

LOCK_ENDPOINT_SECRETS = """
SELECT id, secret, previous_secret FROM webhook_endpoints ORDER BY id FOR UPDATE
"""
ANY_SEALED_ENDPOINT_SECRET = """
SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE secret LIKE $1 OR previous_secret LIKE $1)
"""
UPDATE_ENDPOINT_SECRETS = """
UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1
"""
COUNT_ALL_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"

# --- team endpoints --------------------------------------------------------------------------

# `$n OR team_id = $m`: an admin key (true) reaches every team's endpoints, a team key its own.
INSERT_TEAM_ENDPOINT = f"""
INSERT INTO webhook_endpoints (id, team_id, url, secret, event_types, description, disabled_at,
                               disabled_reason)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN clock_timestamp() END,
        CASE WHEN $7 THEN 'disabled by request' END)
RETURNING {ENDPOINT_COLUMNS}
"""
SELECT_TEAM_ENDPOINT = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
WHERE id = $1 AND conversation_id IS NULL AND ($3 OR team_id = $2)
"""
SELECT_TEAM_ENDPOINTS_PAGE = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
WHERE conversation_id IS NULL AND ($2 OR team_id = $1)
  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
ORDER BY created_at DESC, id DESC
LIMIT $5
"""
# Counted under a transaction lock per team (taken in a statement of its own, so the count's
# snapshot sees every create committed before), so concurrent creates cannot pass the cap together.
LOCK_TEAM_ENDPOINTS = """
SELECT pg_advisory_xact_lock(
    hashtextextended('webhook_endpoints:' || coalesce($1::bigint::text, ''), 0))
"""
COUNT_TEAM_ENDPOINTS = """
SELECT count(*) FROM webhook_endpoints
WHERE conversation_id IS NULL AND team_id IS NOT DISTINCT FROM $1
"""
# Each of url, event_types, description is changed only when given (NULL keeps it).
UPDATE_TEAM_ENDPOINT = f"""
UPDATE webhook_endpoints
SET url = coalesce($2, url), event_types = coalesce($3, event_types),
    description = coalesce($4, description), updated_at = clock_timestamp()
WHERE id = $1 AND conversation_id IS NULL
RETURNING {ENDPOINT_COLUMNS}
"""
# The endpoint row first (claims hold it while they claim), then its deliveries, then the row:
# the order in which the dispatcher takes them, so a delete never deadlocks with a claim.
DELETE_TEAM_ENDPOINT = """
WITH endpoint AS (
    SELECT id FROM webhook_endpoints
    WHERE id = $1 AND conversation_id IS NULL AND ($3 OR team_id = $2)
    FOR UPDATE
), deliveries AS (
    DELETE FROM webhook_deliveries d USING endpoint WHERE d.endpoint_id = endpoint.id
)
DELETE FROM webhook_endpoints e USING endpoint WHERE e.id = endpoint.id
"""


async def upsert_endpoint(
    conn: Any, conversation_id: uuid.UUID, url: str, secret: str
) -> asyncpg.Record:
    return await conn.fetchrow(UPSERT_ENDPOINT, conversation_id, url, secret)


async def clear_endpoint_url(conn: Any, conversation_id: uuid.UUID) -> None:
    await conn.execute(CLEAR_ENDPOINT_URL, conversation_id)


async def get_endpoint(conn: Any, conversation_id: uuid.UUID) -> asyncpg.Record | None:
    """A conversation's callback endpoint."""
    return await conn.fetchrow(SELECT_ENDPOINT, conversation_id)


async def enable_endpoint(conn: Any, endpoint_id: uuid.UUID) -> asyncpg.Record | None:
    row = await conn.fetchrow(ENABLE_ENDPOINT, endpoint_id)
    if row is not None:
        await conn.execute(RESUME_QUEUE, endpoint_id)
    return row


async def disable_endpoint(
    conn: Any, endpoint_id: uuid.UUID, reason: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(DISABLE_ENDPOINT, endpoint_id, reason)


async def rotate_secret(
    conn: Any, endpoint_id: uuid.UUID, secret: str, grace_seconds: float
) -> asyncpg.Record:
    """Make `secret` current; the old one signs too for `grace_seconds` (endpoint must exist)."""
    return await conn.fetchrow(ROTATE_SECRET, endpoint_id, secret, grace_seconds)


async def endpoint_succeeded(conn: Any, endpoint_id: uuid.UUID) -> None:
    await conn.execute(ENDPOINT_SUCCEEDED, endpoint_id)


async def endpoint_failed(conn: Any, endpoint_id: uuid.UUID) -> float:
    """Record a failure; return for how many seconds the endpoint has been failing."""
    return await conn.fetchval(ENDPOINT_FAILED, endpoint_id) or 0.0


async def create_team_endpoint(
    conn: Any, team_id: int | None, url: str, secret: str, event_types: list[str],
    description: str, disabled: bool,
) -> asyncpg.Record:
    return await conn.fetchrow(INSERT_TEAM_ENDPOINT, uuid.uuid4(), team_id, url, secret,
                               event_types, description, disabled)


async def get_team_endpoint(
    conn: Any, endpoint_id: uuid.UUID, team_id: int | None, any_team: bool
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_TEAM_ENDPOINT, endpoint_id, team_id, any_team)


async def list_team_endpoints(
    conn: Any, team_id: int | None, any_team: bool, cursor: tuple[Any, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, after `cursor` (created_at, id)."""
    created_at, endpoint_id = cursor or (None, None)
    return await conn.fetch(SELECT_TEAM_ENDPOINTS_PAGE, team_id, any_team, created_at,
                            endpoint_id, limit)


async def count_team_endpoints(conn: Any, team_id: int | None) -> int:
    """The team's endpoints; holds a lock on the team's endpoint list until the transaction ends."""
    await conn.execute(LOCK_TEAM_ENDPOINTS, team_id)
    return await conn.fetchval(COUNT_TEAM_ENDPOINTS, team_id)


async def update_team_endpoint(
    conn: Any, endpoint_id: uuid.UUID, url: str | None, event_types: list[str] | None,
    description: str | None,
) -> asyncpg.Record:
    return await conn.fetchrow(UPDATE_TEAM_ENDPOINT, endpoint_id, url, event_types, description)


async def delete_team_endpoint(
    conn: Any, endpoint_id: uuid.UUID, team_id: int | None, any_team: bool
) -> bool:
    return await conn.execute(DELETE_TEAM_ENDPOINT, endpoint_id, team_id, any_team) != "DELETE 0"


async def enqueue(
    conn: Any, conversation_id: uuid.UUID, event_type: str, payload: dict[str, Any],
    patterns: list[str], to_callback: bool,
) -> None:
    """Queue the event for every endpoint it goes to (see ENQUEUE), in the caller's transaction."""
    await conn.execute(ENQUEUE, conversation_id, event_type, payload, patterns, to_callback)


async def enqueue_many(
    conn: Any, conversation_ids: list[uuid.UUID], event_type: str,
    payloads: list[dict[str, Any]], patterns: list[str], to_callback: bool,
) -> None:
    """ENQUEUE for a batch, in list order, inside a transaction that locked the conversations."""
    await conn.execute(ENQUEUE_MANY, conversation_ids, event_type, payloads, patterns,
                       to_callback)


async def hooked_conversations(
    conn: Any, conversation_ids: list[uuid.UUID], patterns: list[str], to_callback: bool
) -> set[uuid.UUID]:
    rows = await conn.fetch(SELECT_HOOKED, conversation_ids, patterns, to_callback)
    return {r["id"] for r in rows}


async def claim_heads(
    conn: Any, limit: int, worker: str, lease_seconds: float, rooms: dict[uuid.UUID, int],
    room: int, cursor: tuple[uuid.UUID, uuid.UUID] = (uuid.UUID(int=0), uuid.UUID(int=0)),
) -> tuple[list[asyncpg.Record], tuple[uuid.UUID, uuid.UUID]]:
    """Strict order: claim the heads of up to `limit` ready queues (in a transaction), at most
    `rooms[endpoint]` (else `room`) of one endpoint, walking the queues from `cursor`. Returns the
    jobs and the cursor for the next claim (the last queue taken)."""
    full = [endpoint_id for endpoint_id, left in rooms.items() if left <= 0]
    ready = await conn.fetch(READY_QUEUES, limit * READY_PER_SLOT, *cursor, full)
    taken: dict[uuid.UUID, int] = {}
    chosen = []
    for row in ready:
        endpoint_id = row["endpoint_id"]
        if taken.get(endpoint_id, 0) < rooms.get(endpoint_id, room):
            taken[endpoint_id] = taken.get(endpoint_id, 0) + 1
            chosen.append(row)
            if len(chosen) == limit:
                break
    if not chosen:
        return [], cursor
    locked = {r["id"] for r in await conn.fetch(LOCK_ENDPOINTS, list(taken))}
    chosen = [r for r in chosen if r["endpoint_id"] in locked]
    if not chosen:
        return [], cursor
    jobs = await conn.fetch(
        CLAIM_HEADS, [r["endpoint_id"] for r in chosen], [r["conversation_id"] for r in chosen],
        worker, lease_seconds,
    )
    return jobs, (chosen[-1]["endpoint_id"], chosen[-1]["conversation_id"])


async def claim_due(
    conn: Any, limit: int, worker: str, lease_seconds: float, rooms: dict[uuid.UUID, int],
    room: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM_DUE, limit, worker, lease_seconds, list(rooms),
                            list(rooms.values()), room)


async def release_claims(conn: Any, worker: str) -> None:
    await conn.execute(RELEASE_CLAIMS, worker)


async def record_attempt(
    conn: Any, delivery_id: uuid.UUID, trigger: str, status_code: int, response_body: str,
    error: str | None, duration_ms: int,
) -> asyncpg.Record:
    return await conn.fetchrow(
        RECORD_ATTEMPT, delivery_id, trigger, status_code, response_body, error, duration_ms
    )


async def finish_scheduled(
    conn: Any, delivery_id: uuid.UUID, worker: str, status: str, delay_seconds: float,
    failed: bool, status_code: int, response_body: str, error: str | None, duration_ms: int,
) -> bool:
    """Apply a scheduled attempt's outcome and log the attempt; False (nothing written) if the
    claim was lost meanwhile."""
    done = await conn.execute(
        FINISH_SCHEDULED, delivery_id, worker, status, delay_seconds, int(failed), status_code,
        response_body, error, duration_ms,
    )
    return done != "INSERT 0 0"


async def settle_manual(conn: Any, delivery_id: uuid.UUID) -> None:
    await conn.execute(SETTLE_MANUAL, delivery_id)


async def insert_finished(
    conn: Any, delivery_id: uuid.UUID, endpoint_id: uuid.UUID, conversation_id: uuid.UUID | None,
    event_type: str, payload: dict[str, Any], status: str,
) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_FINISHED, delivery_id, endpoint_id, conversation_id, event_type, payload, status
    )


async def get_delivery_job(
    conn: Any, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_DELIVERY_JOB, endpoint_id, delivery_id)


async def get_delivery(
    conn: Any, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_DELIVERY, endpoint_id, delivery_id)


async def list_deliveries(
    conn: Any, endpoint_id: uuid.UUID, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_DELIVERIES_PAGE, endpoint_id, before, limit)


async def list_attempts(conn: Any, delivery_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ATTEMPTS, delivery_ids)


async def count_pending(conn: Any, endpoint_id: uuid.UUID) -> int:
    return await conn.fetchval(COUNT_PENDING, endpoint_id)


async def count_all_pending(conn: Any) -> int:
    """Deliveries waiting to go out, over every endpoint (the queue depth metric)."""
    return await conn.fetchval(COUNT_ALL_PENDING)


async def lock_endpoint_secrets(conn: Any) -> list[asyncpg.Record]:
    """Every endpoint's stored secrets, locked until the transaction ends (for re-encryption)."""
    rows: list[asyncpg.Record] = await conn.fetch(LOCK_ENDPOINT_SECRETS)
    return rows


async def update_endpoint_secrets(
    conn: Any, endpoint_id: uuid.UUID, secret: str, previous_secret: str | None
) -> None:
    await conn.execute(UPDATE_ENDPOINT_SECRETS, endpoint_id, secret, previous_secret)


async def any_sealed_endpoint_secret(conn: Any, prefix: str) -> bool:
    """Whether any endpoint secret is stored in the encrypted form starting with `prefix`."""
    return bool(await conn.fetchval(ANY_SEALED_ENDPOINT_SECRET, prefix + "%"))
