"""How an endpoint's `event_types` filter matches (the event types are listed in `models.py`).

A filter entry is an exact type (`message.created`), a prefix of types (`run.*`), or `*` (all).
Matching is done in SQL by array overlap: an event of type `a.b` goes to every endpoint whose
filter holds one of `patterns("a.b")` = `["a.b", "a.*", "*"]`.
"""

from __future__ import annotations

from chatserver.models import (
    CONVERSATION_CREATED,
    CONVERSATION_UPDATED,
    EVENT_TYPES,
    WEBHOOK_TEST,
)

# Events a conversation's callback_url does not get: it keeps receiving what it did before team
# endpoints existed (conversation events go to team endpoints only).
NOT_FOR_CALLBACKS = frozenset({CONVERSATION_CREATED, CONVERSATION_UPDATED})

ALL = "*"
PREFIXES = frozenset(t.split(".", 1)[0] for t in EVENT_TYPES)


def patterns(event_type: str) -> list[str]:
    """The filter entries that select `event_type`."""
    return [event_type, event_type.split(".", 1)[0] + ".*", ALL]


def filter_problem(entry: object) -> str | None:
    """Why `entry` is not a valid filter entry, or None."""
    if not isinstance(entry, str):
        return "must be a string"
    if entry == ALL or entry in EVENT_TYPES and entry != WEBHOOK_TEST:
        return None
    if entry.endswith(".*") and entry[:-2] in PREFIXES:
        return None
    return "is not an event type (" + ", ".join(sorted(EVENT_TYPES)) + "), a `prefix.*` or `*`"
