"""Every query of store/messages.py finds its rows through an index that leads with
conversation_id, on a plain table and on hash partitions (where it reads one partition).

200,000 messages over 1,000 conversations, analyzed: enough for the planner to pick what it would
pick at any size. Plans are checked as planned for the parameters (the pool's
force_custom_plan) and as generic plans (no sequential scan; pages seek to their bounds).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest

from chatserver.db.migrate import migrate
from chatserver.store import messages as store
from tests.store.conftest import seed

CONVERSATIONS = 1_000
PER_CONVERSATION = 200
PARTITIONS = 4

# An index and the indexes of the partitions attached to it.
SELECT_INDEX_FAMILY = """
SELECT $1::text UNION ALL
SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass
"""


def plan_text(rows: list[Any]) -> str:
    return "\n".join(r[0] for r in rows)


async def index_family(db: asyncpg.Connection, index: str) -> set[str]:
    return {r[0] for r in await db.fetch(SELECT_INDEX_FAMILY, index)}


def sorts(plan: str) -> bool:
    """Whether the plan has a Sort node (a Merge Append's "Sort Key" only merges ordered runs)."""
    return re.search(r"Sort  \(", plan) is not None


def scans(plan: str) -> list[str]:
    """The relations read by the plan's scans of messages (a table or a partition)."""
    return re.findall(r"(?:Scan(?: Backward)? using \w+|Bitmap Heap Scan) on (messages\w*)", plan)


def queries(
    conversation: uuid.UUID, message: uuid.UUID,
) -> list[tuple[str, tuple[Any, ...], str, bool]]:
    """(SQL, parameters, the index it must use, whether it walks that index in order) for each
    query the store sends. A replay of half a conversation may rightly be a bitmap scan and a
    small sort."""
    batch = [store.NewMessage(conversation, "x", "text/plain", "message", "sent", "t",
                              client_id=f"c{i}") for i in (5, 500)]
    return [
        (store.SELECT_BY_CLIENT_ID, (conversation, "c5"), "messages_client_id_unique", False),
        (store.SELECT_PAGE_DESC, (conversation, None, None, 51), "messages_seq_unique", True),
        (store.SELECT_PAGE_DESC, (conversation, 150, None, 51), "messages_seq_unique", True),
        (store.SELECT_PAGE_ASC, (conversation, None, 100, 1000), "messages_seq_unique", False),
        (store.UPDATE_MESSAGE, (conversation, message, "read", None, None), "messages_pkey",
         False),
        (store.INSERT_MESSAGES, store.insert_messages_args(batch), "messages_client_id_unique",
         False),
    ]


@pytest.mark.parametrize("partitions", [0, PARTITIONS])
async def test_message_queries_use_conversation_indexes(
    db: asyncpg.Connection, partitions: int,
) -> None:
    await migrate(db, partitions=partitions)
    await seed(db, CONVERSATIONS, PER_CONVERSATION)
    conversation, message = await db.fetchrow(
        "SELECT conversation_id, id FROM messages WHERE seq = 7 LIMIT 1")
    for sql, params, index, in_order in queries(conversation, message):
        plan = plan_text(await db.fetch("EXPLAIN " + sql, *params))
        assert "Seq Scan" not in plan, plan
        used = scans(plan)
        names = await index_family(db, index)
        assert any(f"using {name} on" in plan or f"Index Scan on {name}" in plan
                   for name in names), (index, plan)
        if in_order:
            assert not sorts(plan), plan
        if sql is not store.INSERT_MESSAGES:  # its probes take their keys from the input rows
            assert len(set(used)) == 1, plan  # one table, or one partition of it
    await check_generic_pages(db, conversation)


def literal(value: object) -> str:
    """A parameter as SQL text, for EXECUTE (which takes no bind parameters)."""
    return "NULL" if value is None else f"'{value}'"


async def check_generic_pages(db: asyncpg.Connection, conversation: uuid.UUID) -> None:
    """The generic plan of a page (plan_cache_mode = auto switches to it after a few executions)
    cannot know which bounds are NULL; it must still seek to them, in order, filtering nothing.
    On partitions it prunes at run time."""
    family = await index_family(db, "messages_seq_unique")
    await db.execute("SET plan_cache_mode = force_generic_plan")
    for sql in (store.SELECT_PAGE_DESC, store.SELECT_PAGE_ASC):
        await db.execute(f"PREPARE page (uuid, bigint, bigint, bigint) AS {sql}")
        for params in [(conversation, None, None, 51), (conversation, 150, None, 51),
                       (conversation, None, 100, 500)]:
            values = ", ".join(literal(v) for v in params)
            plan = plan_text(await db.fetch(f"EXPLAIN EXECUTE page ({values})"))
            assert "Seq Scan" not in plan and "Filter" not in plan and not sorts(plan), plan
            assert any(f"using {name} on" in plan for name in family), plan
        await db.execute("DEALLOCATE page")
    await db.execute("RESET plan_cache_mode")
