"""The package's import graph, read from the source with `ast`: no import circles, and no import
against the direction of travel (ARCHITECTURE.md). Imports under `if TYPE_CHECKING:` are for the
type checker only and are left out; imports inside functions count."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.localhost import REPO

PACKAGE = REPO / "chatserver"

# room -> rooms it must never import (a room is chatserver's first-level package or module).
FORBIDDEN = {
    # The Python client talks to a server over HTTP only: it imports nothing of it.
    "client": {"api", "app", "appkeys", "auth", "bus", "cli", "config", "db", "metrics", "models",
               "openapi", "problems", "ratelimit", "realtime", "security", "server", "services",
               "store", "validation", "webhooks"},
    "store": {"api", "realtime", "services", "webhooks", "bus", "app", "cli", "server", "appkeys"},
    "db": {"api", "realtime", "services", "webhooks", "bus", "store", "app", "cli", "appkeys"},
    "bus": {"api", "realtime", "services", "webhooks", "store", "app", "cli", "appkeys"},
    "webhooks": {"api", "realtime", "services", "app", "cli"},
    "services": {"api", "realtime", "app", "cli"},
    "auth": {"api", "realtime", "services", "webhooks", "app", "cli"},
    "security": {"api", "realtime", "services", "webhooks", "auth", "bus", "app", "cli", "server"},
    "realtime": {"api", "app", "cli"},
    "server": {"api", "realtime", "services", "webhooks", "store", "bus", "db", "app", "cli"},
    "api": {"app", "cli"},
    "openapi": {"api", "realtime", "services", "app", "cli"},
    "problems": {"api", "realtime", "services", "webhooks", "store", "app", "cli"},
    "validation": {"api", "realtime", "services", "webhooks", "store", "app", "cli"},
    "config": {"api", "realtime", "services", "webhooks", "store", "bus", "app", "cli"},
    "models": {"api", "realtime", "services", "webhooks", "store", "bus", "app", "cli"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def imported(node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """The chatserver modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert node.level == 0, "relative imports are not used in chatserver"
        base = node.module or ""
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    return {name for name in names if name.split(".")[0] == "chatserver" and name in known}


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = set()
        for node in runtime_imports(tree):
            targets |= imported(node, known)
        edges[name] = targets - {name}
    return edges


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every group of nodes that reach each other (a circle), each sorted, sorted by first node."""
    reach = {node: reachable(edges, node) for node in edges}
    groups = {
        tuple(sorted(other for other in reach if other in reach[node] and node in reach[other]))
        for node in edges if node in reach[node]
    }
    return sorted(list(group) for group in groups)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "chatserver"


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "chatserver.realtime.hub" in edges["chatserver.realtime.context"]
    assert "chatserver.store.messages" in edges["chatserver.services.history"]
    # TYPE_CHECKING imports are not edges: appkeys names every room's types.
    assert not edges["chatserver.appkeys"]


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


def test_no_circles_between_rooms() -> None:
    """Rooms (api, realtime, services, store, ...) form layers: none depends on itself in a loop."""
    rooms: dict[str, set[str]] = {}
    for source, targets in graph().items():
        rooms.setdefault(room(source), set()).update(
            room(t) for t in targets if room(t) != room(source))
    assert cycles(rooms) == []


def test_cycle_detection_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_against_the_direction_of_travel() -> None:
    wrong = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items() for target in targets
        if room(target) in FORBIDDEN.get(room(source), set())
    )
    assert wrong == []


def test_services_learn_nothing_from_the_realtime_room() -> None:
    """The hub hears of commits through the MessageEvents port passed to MessageService."""
    edges = graph()
    assert not any(room(t) == "realtime" for t in edges["chatserver.services.messages"])
