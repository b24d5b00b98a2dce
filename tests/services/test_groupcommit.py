"""Group commit on a real Postgres: concurrent posts share transactions, each gets its answer.

What must hold whatever the batching: gap-free seqs in submission order per conversation, one row
per client_id (a repeat gets the stored row, created=False), None for an unknown conversation, the
webhook outbox row in the same transaction in seq order, and a bad message failing alone.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from chatserver.services.groupcommit import GroupCommitter
from chatserver.store.messages import NewMessage

WAIT = 30.0  # a bound only a real hang reaches


async def new_conversation(db: asyncpg.Connection, *, webhook: bool = False) -> uuid.UUID:
    cid = uuid.uuid4()
    await db.execute("INSERT INTO conversations (id, channel, usecase) VALUES ($1, 'API', 'x')",
                     cid)
    if webhook:
        await db.execute("INSERT INTO webhook_endpoints (id, conversation_id, url, secret) "
                         "VALUES ($1, $1, 'http://127.0.0.1:9/hook', 's')", cid)
    return cid


def message(cid: uuid.UUID, content: str, client_id: str | None = None) -> NewMessage:
    return NewMessage(conversation_id=cid, content=content, content_type="text",
                      type="user_input", status="received", created_by="t", client_id=client_id)


async def submit_all(committer: GroupCommitter, news: list[NewMessage]) -> list[Any]:
    return await asyncio.wait_for(
        asyncio.gather(*(committer.submit(n) for n in news), return_exceptions=True), WAIT)


async def test_a_burst_of_posts_across_conversations(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    a, b = await new_conversation(db), await new_conversation(db)
    await db.execute("INSERT INTO messages (id, conversation_id, seq, client_id, content, "
                     "content_type, type, channel, status, created_by) VALUES "
                     "($1, $2, 1, 'old', 'before', 'text', 'user_input', 'API', 'received', 't')",
                     uuid.uuid4(), a)
    await db.execute("UPDATE conversations SET last_seq = 1 WHERE id = $1", a)
    news = [message(a if i % 2 else b, f"m{i}") for i in range(40)]
    news += [message(a, "dup", "k1"), message(a, "dup", "k1"), message(a, "again", "old"),
             message(uuid.uuid4(), "nowhere")]
    # One batch at a time: seqs then follow submission order across batches too.
    committer = GroupCommitter(pool, max_batch=16, in_flight=1)
    results = await submit_all(committer, news)

    created = [r for r in results if r.created]
    assert len(created) == 41  # 40 plain + the first k1
    for cid, first in ((a, 2), (b, 1)):
        seqs = [r.row["seq"] for r in created if r.row["conversation_id"] == cid]
        contents = [r.row["content"] for r in created if r.row["conversation_id"] == cid]
        assert sorted(seqs) == list(range(first, first + len(seqs)))  # gap-free
        by_seq = [c for _, c in sorted(zip(seqs, contents, strict=True))]
        assert by_seq == [n.content for n in news[:41] if n.conversation_id == cid]
    k1, k1_again, old, nowhere = results[40:]
    assert k1.created and not k1_again.created and k1_again.row["id"] == k1.row["id"]
    assert not old.created and old.row["content"] == "before"
    assert nowhere.row is None
    assert await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", a) == 22


async def test_outbox_rows_commit_with_their_messages_in_seq_order(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    hooked, plain = await new_conversation(db, webhook=True), await new_conversation(db)
    news = [message(hooked if i % 3 else plain, f"m{i}") for i in range(30)]
    await submit_all(GroupCommitter(pool, max_batch=64, in_flight=1), news)
    rows = await db.fetch("SELECT conversation_id, payload FROM webhook_deliveries "
                          "ORDER BY position")
    assert {r["conversation_id"] for r in rows} == {hooked}
    seqs = [r["payload"]["data"]["message"]["seq"] for r in rows]
    assert seqs == list(range(1, 21))
    assert all(r["payload"]["type"] == "message.created" for r in rows)


async def test_one_bad_message_fails_alone(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    cid = await new_conversation(db)
    news = [message(cid, "fine-1"), message(cid, "bad\x00byte"), message(cid, "fine-2")]
    results = await submit_all(GroupCommitter(pool, max_batch=64, in_flight=1), news)
    assert isinstance(results[1], asyncpg.PostgresError)
    assert [r.row["content"] for r in (results[0], results[2])] == ["fine-1", "fine-2"]
    assert [r.row["seq"] for r in (results[0], results[2])] == [1, 2]
    assert await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", cid) == 2


async def test_concurrent_batches_keep_seqs_gap_free_in_submission_order(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    rooms = [await new_conversation(db) for _ in range(5)]
    news = [message(rooms[(i * 7) % 5], f"m{i}") for i in range(200)]
    # Several batches at once over the same conversations: no deadlock, no gap, no duplicate,
    # and each conversation's seqs follow the order of submission across batches.
    results = await submit_all(GroupCommitter(pool, max_batch=8, in_flight=4), news)
    assert all(r.created for r in results)
    for cid in rooms:
        mine = [r.row for r in results if r.row["conversation_id"] == cid]
        assert [m["seq"] for m in mine] == list(range(1, len(mine) + 1))
        assert [m["content"] for m in mine] == [n.content for n in news if n.conversation_id == cid]


async def parked_in_transaction(db: asyncpg.Connection, holder: asyncpg.Connection) -> bool:
    """Whether a pool connection (not `holder`) has begun a transaction and waits in it."""
    return bool(await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> $1 AND state = 'idle in transaction'", holder.get_server_pid()))


async def test_a_later_batch_never_numbers_before_an_earlier_one_that_waits(
    pool: asyncpg.Pool, db: asyncpg.Connection, database_url: str
) -> None:
    # Two conversations, `other` first in id order: a batch locks conversations in id order, so a
    # batch holding a message for both waits on `other` before it touches `room`.
    other, room = sorted([await new_conversation(db), await new_conversation(db)])
    committer = GroupCommitter(pool, max_batch=16, in_flight=3)
    holder = await asyncpg.connect(database_url)
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", other)
        # Submitted in one iteration: they form one batch (the second task started finds none).
        first = asyncio.gather(committer.submit(message(room, "first")),
                               committer.submit(message(other, "elsewhere")))
        while not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                    "datname = current_database() AND wait_event_type = 'Lock'"):
            await asyncio.sleep(0.01)  # until that batch waits for `other`
        later = asyncio.ensure_future(committer.submit(message(room, "later")))
        # The later batch either stores its message at once (the race) or waits for its turn
        # inside its transaction; only then is `other` released.
        while not later.done() and not await parked_in_transaction(db, holder):
            await asyncio.sleep(0.01)
        await lock.rollback()
        stored = [*await asyncio.wait_for(first, WAIT), await asyncio.wait_for(later, WAIT)]
    finally:
        await holder.close()
    seqs = {s.row["content"]: s.row["seq"] for s in stored if s.row["conversation_id"] == room}
    assert seqs == {"first": 1, "later": 2}


FAIL_AT_COMMIT = """
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(14);  -- held by the test until the later batch is under way
    RAISE EXCEPTION 'refused at commit';
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON messages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.content = 'refused at commit') EXECUTE FUNCTION fail_at_commit();
"""


async def test_a_batch_retried_after_a_failed_commit_keeps_its_place(
    pool: asyncpg.Pool, db: asyncpg.Connection, database_url: str
) -> None:
    room = await new_conversation(db)
    await db.execute(FAIL_AT_COMMIT)
    committer = GroupCommitter(pool, max_batch=16, in_flight=2)
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock(14)")
        # One batch that numbers both messages, then fails at COMMIT and is retried one by one.
        first = asyncio.gather(committer.submit(message(room, "first")),
                               committer.submit(message(room, "refused at commit")),
                               return_exceptions=True)
        while not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                    "datname = current_database() AND wait_event_type = 'Lock'"):
            await asyncio.sleep(0.01)  # until its commit waits for the advisory lock
        later = asyncio.ensure_future(committer.submit(message(room, "later")))
        # The later batch waits either on the room's row lock (then takes the seqs the failed
        # commit gives back) or for its turn inside its transaction.
        while (await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                 "datname = current_database() AND wait_event_type = 'Lock'") < 2
               and not await parked_in_transaction(db, holder)):
            await asyncio.sleep(0.01)
        await holder.execute("SELECT pg_advisory_unlock(14)")
        ok, refused = await asyncio.wait_for(first, WAIT)
        stored_later = await asyncio.wait_for(later, WAIT)
    finally:
        await holder.close()
    assert isinstance(refused, asyncpg.RaiseError)
    assert [ok.row["seq"], stored_later.row["seq"]] == [1, 2]
