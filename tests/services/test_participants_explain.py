"""The conversation list by participant reads one message per conversation (its last, by seq),
never scanning a conversation's messages: proven on the plan Postgres picks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chatserver.store.participants import SELECT_CONVERSATIONS_OF

SEED = """
INSERT INTO conversations (id, channel, usecase, last_seq)
SELECT md5('c' || c)::uuid, 'API', 'DEFAULT', 50 FROM generate_series(1, 400) c;
INSERT INTO messages (id, conversation_id, seq, content, content_type, type, channel, status,
                      created_by)
SELECT gen_random_uuid(), md5('c' || c)::uuid, s, 'm', 'TEXT', 'USER_INPUT', 'API', 'RECEIVED', 'k'
FROM generate_series(1, 400) c, generate_series(1, 50) s;
INSERT INTO participants (conversation_id, id, kind, name, role, last_read_seq)
SELECT md5('c' || c)::uuid, p, 'user', 'p', 'member', c % 50
FROM generate_series(1, 400) c, LATERAL (VALUES ('p' || (c % 4)), ('everywhere')) v(p);
ANALYZE conversations; ANALYZE messages; ANALYZE participants;
"""


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


@pytest.mark.parametrize(("participant", "conversations"), [("p1", 100), ("everywhere", 400)])
async def test_list_probes_each_last_message_by_index(
    db: Any, participant: str, conversations: int
) -> None:
    await db.execute(SEED)
    raw = await db.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {SELECT_CONVERSATIONS_OF}",
                            participant, None, None, None, 50)
    plan = (orjson.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    # "messages", or its hash partitions (messages_p0, ...) with CHATSERVER_TEST_PARTITIONS.
    on_messages = [n for n in nodes(plan)
                   if str(n.get("Relation Name", "")).startswith("messages")]
    assert on_messages, [(n["Node Type"], n.get("Relation Name"), n.get("Index Name"))
                         for n in nodes(plan)]
    for node in on_messages:  # never a Seq Scan or a hash join over all 20,000 messages
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), node["Node Type"]
        assert "seq = c.last_seq" in node["Index Cond"], node["Index Cond"]
        assert node["Actual Rows"] <= 1
    # One probe per conversation in all (spread over the partitions when there are some).
    assert sum(n["Actual Loops"] for n in on_messages) == conversations
    rows = await db.fetch(SELECT_CONVERSATIONS_OF, participant, None, None, None, 500)
    assert len(rows) == conversations
    assert all(r["unread_count"] == 50 - r["last_read_seq"] for r in rows)
    assert all(r["m_seq"] == 50 for r in rows)
