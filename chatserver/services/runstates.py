"""A run's statuses and the transitions between them: the one table, checked in one place.

`check_transition` is called inside the transaction that writes the new status, after the run's
row is locked (`chatserver.services.runs`); the API's 409 comes from here and names the current
status.
"""

from __future__ import annotations

from chatserver.models import RunStatus
from chatserver.problems import Problem

QUEUED, RUNNING, REQUIRES_ACTION = RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.REQUIRES_ACTION
COMPLETED, FAILED, CANCELLED = RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({REQUIRES_ACTION, COMPLETED, FAILED, CANCELLED}),
    REQUIRES_ACTION: frozenset({RUNNING, FAILED, CANCELLED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}
ENDED = frozenset(status for status, nexts in ALLOWED.items() if not nexts)
# What the `reject` and `interrupt` input policies count as "a run is working".
WORKING = frozenset({QUEUED, RUNNING})


def conflict(current: RunStatus, detail: str) -> Problem:
    return Problem(409, detail, code="invalid_transition",
                   invalid_params=[("status", f"the run is {current}")])


def check_transition(current: RunStatus, new: RunStatus) -> None:
    """409 naming the current status unless `current -> new` is in ALLOWED (staying put is not a
    transition, but an ended run never changes)."""
    if current in ENDED:
        raise conflict(current, f"the run has ended ({current}); it never changes again")
    if new != current and new not in ALLOWED[current]:
        raise conflict(current, f"the run is {current}; it may not become {new}")
