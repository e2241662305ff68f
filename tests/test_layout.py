"""The package's layout follows the DAG (issue 13): a rule file's code is the subpackage of the same
name, data loading sits below every stage, no two modules import each other (directly or around a
circle), and no module outgrows one screenful of jobs."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow" / "gemsft"
STAGES = ("data", "pretrain", "train", "sample", "score", "evaluate", "report")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "lm_eval_tasks" not in p.parts}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The gemsft modules `path` imports; `from gemsft.x import y` names gemsft.x.y when that is a
    module, else gemsft.x. Inside functions too unless `top_level_only` (a deferred import cannot
    make a circle at import time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gemsft"))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # the sandbox's files import each other relatively (its worker runs them standalone)
                package = module_name(path).split(".")[: None if path.name == "__init__.py" else -1]
                module = ".".join(package[: len(package) - node.level + 1] + ([module] if module else []))
            if module.startswith("gemsft"):
                found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module
                             for a in node.names)
    return found


def test_every_rule_file_has_its_package():
    rule_files = {p.stem for p in (REPO / "rules").glob("*.smk")} - {"common"}
    assert rule_files == set(STAGES)
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage


def test_the_data_package_imports_no_stage():
    """A gemsft.data module that imported a stage's package would make stages depend on each other
    through the data they share."""
    data = [name for name in MODULES if name.startswith("gemsft.data")]
    assert len(data) > 10  # world/ included
    offending = [f"{name} imports {target}" for name in data for target in sorted(imports(MODULES[name], False))
                 if target.split(".")[1] in STAGES[1:]]
    assert not offending, offending


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def test_no_import_circle():
    """Module-level imports only: importing gemsft.a.b runs gemsft/a/__init__ first, so it counts as an
    import of both, except of the importer's own packages, which are already being initialised."""
    graph = {}
    for name, path in MODULES.items():
        own = set(ancestors(name))
        targets = set()
        for target in imports(path, top_level_only=True):
            targets.update(m for m in (*ancestors(target), target) if m in MODULES and m not in own)
        graph[name] = targets - {name}
    # Tarjan's strongly connected components: a component of more than one module is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    assert not circles, circles


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long
