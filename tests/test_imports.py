"""No module of the package imports one that imports it back: every import statement counts, also those
inside functions (a lazy import still makes a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """blsp_emo module -> the blsp_emo modules it imports anywhere in its source."""
    paths = {_module_name(p): p for p in (SRC / "blsp_emo").rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*kept, base] if base else kept)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            imported |= {m for m in map(known, names) if m and m != module}
        graph[module] = imported
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module == goal:
            return True
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return False


def test_no_module_is_imported_back() -> None:
    graph = import_graph()
    assert len(graph) > 90 and "blsp_emo.model.modeling" in graph["blsp_emo.model.loading"]
    circles = sorted(
        f"{module} -> {other} -> ... -> {module}"
        for module in graph
        for other in graph[module]
        if _reaches(graph, other, module)
    )
    assert circles == []


def test_the_graph_sees_imports_inside_functions() -> None:
    # data.synth imports synth_engines only inside functions; the edge must still be there
    graph = import_graph()
    assert "blsp_emo.data.synth_engines" in graph["blsp_emo.data.synth"]
    assert "blsp_emo.data.synth" not in graph["blsp_emo.data.synth_engines"]


def test_loading_imports_modeling_and_never_the_reverse() -> None:
    graph = import_graph()
    assert "blsp_emo.model.modeling" in graph["blsp_emo.model.loading"]
    assert not _reaches(graph, "blsp_emo.model.modeling", "blsp_emo.model.loading")
    assert "blsp_emo.model.testing" not in graph  # the test models live in tests/tiny_models.py
