"""SQL for webhooks: endpoints and secrets, the delivery outbox and its claims, the attempt log.

A dispatcher claims a delivery by setting `locked_by`/`locked_until` in a short transaction, sends
it with no transaction open, and records the outcome only while its claim still holds. The claim
UPDATEs re-check `status` and `locked_until`, so two dispatchers never both claim one delivery.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

ENDPOINT_COLUMNS = (
    "conversation_id, url, secret, previous_secret, previous_secret_expires_at, failing_since, "
    "disabled_at, disabled_reason, created_at, updated_at"
)
DELIVERY_COLUMNS = (
    "id, position, conversation_id, event_type, payload, status, attempt_count, "
    "scheduled_failures, next_attempt_at, locked_until, created_at, finished_at"
)
ATTEMPT_COLUMNS = (
    "delivery_id, attempt, trigger, status_code, response_body, error, duration_ms, created_at"
)
# What a sender needs: the delivery, the endpoint's URL and its signing secrets.
JOB_COLUMNS = (
    "d.id, d.conversation_id, d.event_type, d.payload, d.scheduled_failures, e.url, e.secret, "
    "CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END AS previous_secret"
)

# --- endpoints -------------------------------------------------------------------------------

# Creates the endpoint (with its first secret) or points it at a new URL; `inserted` tells which.
UPSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints (conversation_id, url, secret) VALUES ($1, $2, $3)
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
WHERE conversation_id = $1
RETURNING {ENDPOINT_COLUMNS}
"""
# A re-enabled endpoint's held queue goes out now rather than after its old backoff.
RESUME_QUEUE = """
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE conversation_id = $1 AND status = 'pending' AND next_attempt_at > now()
"""
DISABLE_ENDPOINT = f"""
UPDATE webhook_endpoints
SET disabled_at = clock_timestamp(), disabled_reason = $2, updated_at = clock_timestamp()
WHERE conversation_id = $1 AND disabled_at IS NULL
RETURNING {ENDPOINT_COLUMNS}
"""
ROTATE_SECRET = f"""
UPDATE webhook_endpoints
SET previous_secret = secret, secret = $2,
    previous_secret_expires_at = now() + make_interval(secs => $3),
    updated_at = clock_timestamp()
WHERE conversation_id = $1
RETURNING {ENDPOINT_COLUMNS}
"""
ENDPOINT_SUCCEEDED = """
UPDATE webhook_endpoints SET failing_since = NULL
WHERE conversation_id = $1 AND failing_since IS NOT NULL
"""
# Seconds the endpoint has been failing without a success in between (0 for a first failure).
ENDPOINT_FAILED = """
UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now())
WHERE conversation_id = $1
RETURNING extract(epoch FROM now() - failing_since)::float8
"""

# --- the outbox ------------------------------------------------------------------------------

# Only an endpoint with a URL gets rows. Locking the conversation row (posts already hold it)
# makes every delivery of a conversation take its position in commit order.
ENQUEUE = """
WITH ordered AS (SELECT id FROM conversations WHERE id = $2 FOR NO KEY UPDATE)
INSERT INTO webhook_deliveries (id, conversation_id, event_type, payload)
SELECT $1, e.conversation_id, $3, $4
FROM webhook_endpoints e JOIN ordered ON ordered.id = e.conversation_id
WHERE e.url IS NOT NULL
"""
# A batch of the message transaction's events at once. The conversations are already locked by the
# batch insert of the same transaction (INSERT_MESSAGES), which is what ENQUEUE's CTE is for.
ENQUEUE_MANY = """
INSERT INTO webhook_deliveries (id, conversation_id, event_type, payload)
SELECT d.id, e.conversation_id, $3, d.payload
FROM unnest($1::uuid[], $2::uuid[], $4::jsonb[]) WITH ORDINALITY AS d(id, conversation_id,
                                                                        payload, n)
JOIN webhook_endpoints e ON e.conversation_id = d.conversation_id
WHERE e.url IS NOT NULL
ORDER BY d.n
"""

# Which of these conversations have a callback_url. Read after the batch insert locked them, in a
# statement of its own, so a PATCH committed before the lock was granted is seen.
SELECT_HOOKED = """
SELECT conversation_id FROM webhook_endpoints
WHERE conversation_id = ANY($1::uuid[]) AND url IS NOT NULL
"""

# --- claims ----------------------------------------------------------------------------------

# Strict order, step 1: lock endpoints whose queue head is due and not in flight (in strict order
# only the head is ever attempted, so a head in backoff or in flight holds the whole queue).
# Step 2 then claims exactly each head, re-checking it under the row lock. Both cost index probes
# per conversation with pending deliveries, never a read of the backlog: a claim runs each time a
# send slot frees, and at 50,000 queued deliveries the former DISTINCT ON / IN (...) forms took
# 20-37 ms each (1 ms now; BENCHMARKS.md, performance work 13), and Postgres took 86 % of the
# server core in the webhook benchmark (6h).
LOCK_READY_ENDPOINTS = """
WITH RECURSIVE queued AS (  -- each conversation with a pending delivery, one index probe apiece
    (SELECT conversation_id FROM webhook_deliveries WHERE status = 'pending'
     ORDER BY conversation_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.conversation_id FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.conversation_id > q.conversation_id
            ORDER BY d.conversation_id LIMIT 1)
    FROM queued q WHERE q.conversation_id IS NOT NULL
),
ready AS (  -- ... whose queue head is due and not claimed
    SELECT q.conversation_id, head.position FROM queued q
    CROSS JOIN LATERAL (
        SELECT h.position, h.next_attempt_at, h.locked_until FROM webhook_deliveries h
        WHERE h.conversation_id = q.conversation_id AND h.status = 'pending'
        ORDER BY h.position LIMIT 1) head
    WHERE head.next_attempt_at <= now()
      AND (head.locked_until IS NULL OR head.locked_until <= now())
)
SELECT e.conversation_id FROM ready r
JOIN webhook_endpoints e ON e.conversation_id = r.conversation_id
WHERE e.url IS NOT NULL AND e.disabled_at IS NULL
ORDER BY r.position  -- the oldest waiting head first
LIMIT $1
FOR UPDATE OF e SKIP LOCKED
"""
CLAIM_HEADS = f"""
WITH heads AS (  -- one index probe per endpoint (webhook_deliveries_queue)
    SELECT h.id FROM unnest($1::uuid[]) AS c(id) CROSS JOIN LATERAL (
        SELECT id FROM webhook_deliveries
        WHERE conversation_id = c.id AND status = 'pending'
        ORDER BY position LIMIT 1) h
)
UPDATE webhook_deliveries d
SET locked_by = $2, locked_until = now() + make_interval(secs => $3)
FROM heads, webhook_endpoints e
WHERE d.id = heads.id AND e.conversation_id = d.conversation_id
  AND d.status = 'pending' AND d.next_attempt_at <= now()
  AND (d.locked_until IS NULL OR d.locked_until <= now())
RETURNING {JOB_COLUMNS}
"""
# Best effort: any due deliveries, longest due first, several per endpoint at once. Ordered by
# next_attempt_at, whose partial index (webhook_deliveries_due) holds pending rows only: ordered by
# position, a claim read every finished delivery older than the first pending one.
CLAIM_DUE = f"""
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.conversation_id = d.conversation_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND (d.locked_until IS NULL OR d.locked_until <= now())
      AND e.url IS NOT NULL AND e.disabled_at IS NULL
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET locked_by = $2, locked_until = now() + make_interval(secs => $3)
FROM due, webhook_endpoints e
WHERE d.id = due.id AND e.conversation_id = d.conversation_id
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
# A scheduled attempt's outcome, applied only while this dispatcher's claim holds.
FINISH_SCHEDULED = """
UPDATE webhook_deliveries
SET status = $3, next_attempt_at = now() + make_interval(secs => $4),
    scheduled_failures = scheduled_failures + $5, locked_by = NULL, locked_until = NULL,
    finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE clock_timestamp() END
WHERE id = $1 AND locked_by = $2 AND status = 'pending'
"""
# A manual attempt that succeeded settles the delivery (and so releases the queue behind it).
SETTLE_MANUAL = """
UPDATE webhook_deliveries
SET status = 'succeeded', finished_at = clock_timestamp(), locked_by = NULL, locked_until = NULL
WHERE id = $1 AND status <> 'succeeded'
"""
INSERT_FINISHED = f"""
INSERT INTO webhook_deliveries (id, conversation_id, event_type, payload, status, finished_at)
VALUES ($1, $2, $3, $4, $5, clock_timestamp())
RETURNING {DELIVERY_COLUMNS}
"""

# --- the log ---------------------------------------------------------------------------------

SELECT_DELIVERY_JOB = f"""
SELECT {JOB_COLUMNS} FROM webhook_deliveries d
JOIN webhook_endpoints e ON e.conversation_id = d.conversation_id
WHERE d.conversation_id = $1 AND d.id = $2
"""
SELECT_DELIVERY = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE conversation_id = $1 AND id = $2
"""
SELECT_DELIVERIES_PAGE = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
WHERE conversation_id = $1 AND ($2::bigint IS NULL OR position < $2)
ORDER BY position DESC
LIMIT $3
"""
SELECT_ATTEMPTS = f"""
SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts
WHERE delivery_id = ANY($1::uuid[])
ORDER BY delivery_id, attempt
"""
COUNT_PENDING = """
SELECT count(*) FROM webhook_deliveries WHERE conversation_id = $1 AND status = 'pending'
"""

LOCK_ENDPOINT_SECRETS = """
SELECT conversation_id, secret, previous_secret FROM webhook_endpoints
ORDER BY conversation_id FOR UPDATE
"""
ANY_SEALED_ENDPOINT_SECRET = """
SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE secret LIKE $1 OR previous_secret LIKE $1)
"""
UPDATE_ENDPOINT_SECRETS = """
UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE conversation_id = $1
"""
COUNT_ALL_PENDING = "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"

async def upsert_endpoint(
    conn: Any, conversation_id: uuid.UUID, url: str, secret: str
) -> asyncpg.Record:
    return await conn.fetchrow(UPSERT_ENDPOINT, conversation_id, url, secret)


async def clear_endpoint_url(conn: Any, conversation_id: uuid.UUID) -> None:
    await conn.execute(CLEAR_ENDPOINT_URL, conversation_id)


async def get_endpoint(conn: Any, conversation_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_ENDPOINT, conversation_id)


async def enable_endpoint(conn: Any, conversation_id: uuid.UUID) -> asyncpg.Record | None:
    row = await conn.fetchrow(ENABLE_ENDPOINT, conversation_id)
    if row is not None:
        await conn.execute(RESUME_QUEUE, conversation_id)
    return row


async def disable_endpoint(
    conn: Any, conversation_id: uuid.UUID, reason: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(DISABLE_ENDPOINT, conversation_id, reason)


async def rotate_secret(
    conn: Any, conversation_id: uuid.UUID, secret: str, grace_seconds: float
) -> asyncpg.Record:
    """Make `secret` current; the old one signs too for `grace_seconds` (endpoint must exist)."""
    return await conn.fetchrow(ROTATE_SECRET, conversation_id, secret, grace_seconds)


async def endpoint_succeeded(conn: Any, conversation_id: uuid.UUID) -> None:
    await conn.execute(ENDPOINT_SUCCEEDED, conversation_id)


async def endpoint_failed(conn: Any, conversation_id: uuid.UUID) -> float:
    """Record a failure; return for how many seconds the endpoint has been failing."""
    return await conn.fetchval(ENDPOINT_FAILED, conversation_id) or 0.0


async def enqueue(
    conn: Any, delivery_id: uuid.UUID, conversation_id: uuid.UUID, event_type: str,
    payload: dict[str, Any],
) -> None:
    await conn.execute(ENQUEUE, delivery_id, conversation_id, event_type, payload)


async def enqueue_many(
    conn: Any, conversation_ids: list[uuid.UUID], event_type: str,
    payloads: list[dict[str, Any]],
) -> None:
    """ENQUEUE for a batch, in list order, inside a transaction that locked the conversations."""
    await conn.execute(ENQUEUE_MANY, [uuid.uuid4() for _ in payloads], conversation_ids,
                       event_type, payloads)


async def hooked_conversations(conn: Any, conversation_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch(SELECT_HOOKED, conversation_ids)
    return {r["conversation_id"] for r in rows}


async def claim_heads(
    conn: Any, limit: int, worker: str, lease_seconds: float
) -> list[asyncpg.Record]:
    """Strict order: claim the queue head of up to `limit` ready endpoints (in a transaction)."""
    locked = await conn.fetch(LOCK_READY_ENDPOINTS, limit)
    if not locked:
        return []
    ids = [r["conversation_id"] for r in locked]
    return await conn.fetch(CLAIM_HEADS, ids, worker, lease_seconds)


async def claim_due(
    conn: Any, limit: int, worker: str, lease_seconds: float
) -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM_DUE, limit, worker, lease_seconds)


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
    failed: bool,
) -> bool:
    """Apply a scheduled attempt's outcome; False if the claim was lost meanwhile."""
    done = await conn.execute(
        FINISH_SCHEDULED, delivery_id, worker, status, delay_seconds, int(failed)
    )
    return done != "UPDATE 0"


async def settle_manual(conn: Any, delivery_id: uuid.UUID) -> None:
    await conn.execute(SETTLE_MANUAL, delivery_id)


async def insert_finished(
    conn: Any, delivery_id: uuid.UUID, conversation_id: uuid.UUID, event_type: str,
    payload: dict[str, Any], status: str,
) -> asyncpg.Record:
    return await conn.fetchrow(
        INSERT_FINISHED, delivery_id, conversation_id, event_type, payload, status
    )


async def get_delivery_job(
    conn: Any, conversation_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_DELIVERY_JOB, conversation_id, delivery_id)


async def get_delivery(
    conn: Any, conversation_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(SELECT_DELIVERY, conversation_id, delivery_id)


async def list_deliveries(
    conn: Any, conversation_id: uuid.UUID, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_DELIVERIES_PAGE, conversation_id, before, limit)


async def list_attempts(conn: Any, delivery_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(SELECT_ATTEMPTS, delivery_ids)


async def count_pending(conn: Any, conversation_id: uuid.UUID) -> int:
    return await conn.fetchval(COUNT_PENDING, conversation_id)


async def count_all_pending(conn: Any) -> int:
    """Deliveries waiting to go out, over every conversation (the queue depth metric)."""
    return await conn.fetchval(COUNT_ALL_PENDING)


async def lock_endpoint_secrets(conn: Any) -> list[asyncpg.Record]:
    """Every endpoint's stored secrets, locked until the transaction ends (for re-encryption)."""
    rows: list[asyncpg.Record] = await conn.fetch(LOCK_ENDPOINT_SECRETS)
    return rows


async def update_endpoint_secrets(
    conn: Any, conversation_id: uuid.UUID, secret: str, previous_secret: str | None
) -> None:
    await conn.execute(UPDATE_ENDPOINT_SECRETS, conversation_id, secret, previous_secret)


async def any_sealed_endpoint_secret(conn: Any, prefix: str) -> bool:
    """Whether any endpoint secret is stored in the encrypted form starting with `prefix`."""
    return bool(await conn.fetchval(ANY_SEALED_ENDPOINT_SECRET, prefix + "%"))
