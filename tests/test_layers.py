"""The package's shape, checked from its imports so it stays as designed:

    api / web / playground / auth / presenters / callbacks / ops  →  services  →  catalog / models / providers  →  infra

Lower layers never import higher ones, nothing below the views reads the request context
(`flask.request`, `current_app`, `g`, `session`), and no two modules import each other,
directly or around a loop. Every import counts, including those inside functions: an
import moved into a function to dodge a cycle is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "runbase_web"
NAME = "runbase_web"
#: Packages of request handling and presentation: the top layer.
VIEWS = ("api", "web", "playground", "auth", "presenters", "callbacks", "ops")
#: What each lower package may not import.
FORBIDDEN = {
    "services": VIEWS + ("worker",),
    "catalog": VIEWS + ("worker", "services", "providers"),
    "models": VIEWS + ("worker", "services", "providers", "catalog"),
    "providers": VIEWS + ("worker", "services"),
}
REQUEST_CONTEXT = {"request", "current_app", "g", "session"}


def module_name(path: Path) -> str:
    """runbase_web/services/runs.py → runbase_web.services.runs (packages: their __init__)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an `from ... import` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules that `module` imports (a `from pkg import sub` names
    the submodule when it is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    return {name for name in found if name in known and name != module}


def graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_lower_layers_never_import_higher_ones():
    wrong = sorted(f"{module} imports {target}"
                   for module, targets in graph().items()
                   for target in targets
                   if layer_of(target) in FORBIDDEN.get(layer_of(module), ()))
    assert wrong == []


def _request_context_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("flask", "flask_login"):
            uses += [alias.name for alias in node.names
                     if alias.name in REQUEST_CONTEXT | {"current_user"}]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "flask" and node.attr in REQUEST_CONTEXT:
            uses.append(f"flask.{node.attr}")
    return uses


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_nothing_below_the_views_reads_the_request_context(layer):
    wrong = {name: uses for name, path in modules().items()
             if layer_of(name) == layer and (uses := _request_context_uses(path))}
    assert wrong == {}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def test_no_import_cycles():
    assert strongly_connected(graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
