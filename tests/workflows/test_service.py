"""WorkflowConversationManager on a real Postgres: every method, its validation and team scoping."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from chatserver.problems import ValidationProblem
from chatserver.services.workflows import (
    NotFound,
    WorkflowConversation,
    WorkflowConversationManager,
    WorkflowStoreError,
)
from tests.workflows.helpers import COUNT_ROWS, invalid_names, pool

__all__ = ["pool"]


@pytest.fixture
def manager(pool: asyncpg.Pool) -> WorkflowConversationManager:
    return WorkflowConversationManager(pool)


async def test_create_with_seed_example_and_get(manager: WorkflowConversationManager) -> None:
    created = await manager.create_workflow_conversation(
        agent_product_id=123, user_id=456, configuration={"running": True}
    )
    assert isinstance(created, WorkflowConversation)
    assert (created.agent_product_id, created.user_id, created.team_id) == (123, 456, None)
    assert created.configuration == {"running": True}
    assert created.id >= 1
    assert await manager.get_workflow_conversation(created.id) == created
    body = created.to_json()
    assert set(body) == {"id", "agent_product_id", "user_id", "team_id", "configuration",
                         "created_at", "updated_at"}
    assert body["created_at"].endswith("Z")


async def test_create_defaults(manager: WorkflowConversationManager) -> None:
    created = await manager.create_workflow_conversation(7)
    assert created.user_id is None
    assert created.configuration == {}


async def test_get_missing_is_none(manager: WorkflowConversationManager) -> None:
    assert await manager.get_workflow_conversation(987654321) is None


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"agent_product_id": "x"}, {"agent_product_id"}),
        ({"agent_product_id": True}, {"agent_product_id"}),
        ({"agent_product_id": 2**63}, {"agent_product_id"}),
        ({"agent_product_id": 0}, {"agent_product_id"}),
        ({"agent_product_id": None}, {"agent_product_id"}),
        ({"agent_product_id": 1.0}, {"agent_product_id"}),
        ({"agent_product_id": 1, "user_id": "5"}, {"user_id"}),
        ({"agent_product_id": 1, "user_id": False}, {"user_id"}),
        ({"agent_product_id": 1, "configuration": [1]}, {"configuration"}),
        ({"agent_product_id": 1, "configuration": "running"}, {"configuration"}),
        ({"agent_product_id": 1, "configuration": {1: "non-string key"}}, {"configuration"}),
        ({"agent_product_id": 1, "configuration": {"a": {2**64}}}, {"configuration"}),
        ({"agent_product_id": 1, "configuration": {"a": [2**63]}}, {"configuration.a[0]"}),
        ({"agent_product_id": 1, "configuration": {"a": "nul\x00"}}, {"configuration.a"}),
        ({"agent_product_id": "x", "user_id": -1, "configuration": []},
         {"agent_product_id", "user_id", "configuration"}),
    ],
)
async def test_create_rejects_bad_arguments_naming_the_field(
    manager: WorkflowConversationManager, db: asyncpg.Connection, kwargs: dict[str, Any],
    names: set[str],
) -> None:
    with pytest.raises(ValidationProblem) as caught:
        await manager.create_workflow_conversation(**kwargs)
    assert invalid_names(caught.value) == names
    assert caught.value.status == 400
    assert await db.fetchval(COUNT_ROWS) == 0


async def test_create_rejects_deep_configuration(pool: asyncpg.Pool) -> None:
    manager = WorkflowConversationManager(pool, max_json_depth=3)
    with pytest.raises(ValidationProblem) as caught:
        await manager.create_workflow_conversation(1, configuration={"a": {"b": {"c": {}}}})
    assert invalid_names(caught.value) == {"configuration.a.b.c"}


async def test_create_from_body_rejects_unknown_fields(
    manager: WorkflowConversationManager,
) -> None:
    with pytest.raises(ValidationProblem) as caught:
        await manager.create_from_body({"agent_product_id": "x", "colour": "red"})
    assert invalid_names(caught.value) == {"agent_product_id", "colour"}


async def test_update_sets_given_fields_and_replaces_configuration(
    manager: WorkflowConversationManager,
) -> None:
    created = await manager.create_workflow_conversation(1, 2, {"running": True, "step": 3})
    updated = await manager.update_workflow_conversation(
        created.id, {"configuration": {"running": False}}
    )
    assert updated.configuration == {"running": False}
    assert (updated.agent_product_id, updated.user_id) == (1, 2)
    assert updated.updated_at > created.updated_at
    assert updated.created_at == created.created_at
    moved = await manager.update_workflow_conversation(
        created.id, {"agent_product_id": 9, "user_id": None}
    )
    assert (moved.agent_product_id, moved.user_id) == (9, None)
    assert moved.configuration == {"running": False}
    assert await manager.get_workflow_conversation(created.id) == moved


async def test_update_with_nothing_changes_nothing(manager: WorkflowConversationManager) -> None:
    created = await manager.create_workflow_conversation(1, 2)
    assert await manager.update_workflow_conversation(created.id, {}) == created


@pytest.mark.parametrize("updates", [{}, {"user_id": 3}])
async def test_update_of_missing_id_is_not_found(
    manager: WorkflowConversationManager, updates: dict[str, Any]
) -> None:
    with pytest.raises(NotFound) as caught:
        await manager.update_workflow_conversation(424242, updates)
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("updates", "names"),
    [
        ({"name": "x"}, {"name"}),
        ({"id": 5}, {"id"}),
        ({"team_id": 5}, {"team_id"}),
        ({"agent_product_id": None}, {"agent_product_id"}),
        ({"agent_product_id": "12"}, {"agent_product_id"}),
        ({"user_id": True}, {"user_id"}),
        ({"user_id": 2**70}, {"user_id"}),
        ({"configuration": None}, {"configuration"}),
        ({"configuration": ["running"]}, {"configuration"}),
        ({"configuration": {}, "bogus": 1, "user_id": "u"}, {"bogus", "user_id"}),
    ],
)
async def test_update_rejects_bad_updates_and_writes_nothing(
    manager: WorkflowConversationManager, updates: dict[str, Any], names: set[str],
) -> None:
    created = await manager.create_workflow_conversation(1, 2, {"keep": 1})
    with pytest.raises(ValidationProblem) as caught:
        await manager.update_workflow_conversation(created.id, updates)
    assert invalid_names(caught.value) == names
    assert await manager.get_workflow_conversation(created.id) == created


async def test_update_rejects_a_non_object(manager: WorkflowConversationManager) -> None:
    with pytest.raises(ValidationProblem) as caught:
        await manager.update_workflow_conversation(1, ["user_id"])  # type: ignore[arg-type]
    assert invalid_names(caught.value) == {"updates"}


async def test_connect_merges_top_level_keys(manager: WorkflowConversationManager) -> None:
    created = await manager.create_workflow_conversation(
        1, 2, {"running": True, "nested": {"a": 1}, "keep": "me"}
    )
    connected = await manager.connect_to_workflow_conversation(
        created.id, {"lastConnected": 1764000000000, "nested": {"b": 2}}
    )
    assert connected.configuration == {
        "running": True, "keep": "me", "nested": {"b": 2}, "lastConnected": 1764000000000,
    }
    assert await manager.get_workflow_conversation(created.id) == connected


async def test_concurrent_connects_all_land(pool: asyncpg.Pool) -> None:
    manager = WorkflowConversationManager(pool)
    created = await manager.create_workflow_conversation(1, 2, {"running": True})
    await asyncio.gather(*(
        manager.connect_to_workflow_conversation(created.id, {f"client{i}": i}) for i in range(16)
    ))
    found = await manager.get_workflow_conversation(created.id)
    assert found is not None
    assert found.configuration == {"running": True, **{f"client{i}": i for i in range(16)}}


async def test_connect_errors(manager: WorkflowConversationManager) -> None:
    with pytest.raises(NotFound):
        await manager.connect_to_workflow_conversation(31337, {"a": 1})
    created = await manager.create_workflow_conversation(1)
    for bad in ([1], "x", None, {"a": {3j}}):
        with pytest.raises(ValidationProblem) as caught:
            await manager.connect_to_workflow_conversation(created.id, bad)  # type: ignore[arg-type]
        assert invalid_names(caught.value) == {"connection_data"}


@pytest.mark.parametrize("bad_id", ["1", 1.0, True, 0, -5, 2**63, None])
async def test_ids_are_checked_before_the_database(
    manager: WorkflowConversationManager, bad_id: Any
) -> None:
    calls = [
        manager.get_workflow_conversation(bad_id),
        manager.update_workflow_conversation(bad_id, {"user_id": 1}),
        manager.connect_to_workflow_conversation(bad_id, {}),
    ]
    for call in calls:
        with pytest.raises(ValidationProblem) as caught:
            await call
        assert invalid_names(caught.value) == {"id"}
    for listing in (manager.get_workflow_conversations_for_user,
                    manager.get_running_workflow_conversations_for_user):
        with pytest.raises(ValidationProblem) as caught:
            await listing(bad_id)
        assert invalid_names(caught.value) == {"user_id"}


async def test_lists_for_user_newest_first_and_running_means_json_true(
    manager: WorkflowConversationManager,
) -> None:
    configurations: list[dict[str, Any]] = [
        {"running": True}, {"running": "true"}, {}, {"running": False}, {"running": 1},
        {"running": [True]}, {"running": True, "step": 2},
    ]
    made = [await manager.create_workflow_conversation(5, 77, c) for c in configurations]
    await manager.create_workflow_conversation(5, 78, {"running": True})
    await manager.create_workflow_conversation(5, None, {"running": True})
    everything = await manager.get_workflow_conversations_for_user(77)
    assert [c.id for c in everything] == [c.id for c in reversed(made)]
    running = await manager.get_running_workflow_conversations_for_user(77)
    assert [c.id for c in running] == [made[6].id, made[0].id]
    assert await manager.get_workflow_conversations_for_user(79) == []
    # Connecting running=true as JSON makes one running; the string does not.
    await manager.connect_to_workflow_conversation(made[2].id, {"running": True})
    await manager.connect_to_workflow_conversation(made[3].id, {"running": "true"})
    running = await manager.get_running_workflow_conversations_for_user(77)
    assert [c.id for c in running] == [made[6].id, made[2].id, made[0].id]


async def test_team_manager_sees_and_changes_only_its_team(pool: asyncpg.Pool) -> None:
    team_a = WorkflowConversationManager(pool, team_id=1)
    team_b = WorkflowConversationManager(pool, team_id=2)
    admin = WorkflowConversationManager(pool)
    mine = await team_a.create_workflow_conversation(3, 50, {"running": True})
    theirs = await team_b.create_workflow_conversation(3, 50, {"running": True})
    assert (mine.team_id, theirs.team_id) == (1, 2)
    assert await team_b.get_workflow_conversation(mine.id) is None
    with pytest.raises(NotFound):
        await team_b.update_workflow_conversation(mine.id, {"user_id": 51})
    with pytest.raises(NotFound):
        await team_b.update_workflow_conversation(mine.id, {})
    with pytest.raises(NotFound):
        await team_b.connect_to_workflow_conversation(mine.id, {"stolen": True})
    assert await team_a.get_workflow_conversation(mine.id) == mine
    assert [c.id for c in await team_a.get_workflow_conversations_for_user(50)] == [mine.id]
    assert [c.id for c in await team_b.get_running_workflow_conversations_for_user(50)] == [
        theirs.id
    ]
    assert [c.id for c in await admin.get_workflow_conversations_for_user(50)] == [
        theirs.id, mine.id
    ]


async def test_page_for_user_walks_every_row_once(manager: WorkflowConversationManager) -> None:
    made = [await manager.create_workflow_conversation(1, 9, {"running": i % 2 == 0})
            for i in range(7)]
    for running, expected in ((False, made), (True, made[::2])):
        seen: list[int] = []
        before = None
        while True:
            page = await manager.page_for_user(9, running=running, before=before, limit=2)
            seen.extend(c.id for c in page.items)
            if page.next_cursor is None:
                break
            before = page.next_cursor
        assert seen == [c.id for c in reversed(expected)]


@pytest.mark.parametrize("cursor", ["nonsense!", "MjAyNnwx", "eHx5"])
async def test_page_for_user_rejects_foreign_cursors(
    manager: WorkflowConversationManager, cursor: str
) -> None:
    with pytest.raises(ValidationProblem) as caught:
        await manager.page_for_user(9, before=cursor, limit=2)
    assert invalid_names(caught.value) == {"before"}


async def test_database_failure_is_a_clear_error(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    await pool.close()
    manager = WorkflowConversationManager(pool)
    with pytest.raises(WorkflowStoreError) as caught:
        await manager.create_workflow_conversation(1, 2)
    assert "could not create the workflow conversation" in caught.value.detail
    assert isinstance(caught.value.__cause__, asyncpg.InterfaceError)
