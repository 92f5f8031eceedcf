"""The layout's rules: `dsr/` (method + harness) never imports `baselines/`, the paper's maths
(`dsr/snn/`) imports nothing else of the project, no module-level import circle among the
project's modules, and no source file of the method, the baselines, the workflow or the benches
grows past MAX_LINES (split it by concept instead)."""

from __future__ import annotations

import ast

from dsr import REPO_ROOT

MAX_LINES = 400


def imported_modules(source: str) -> set[str]:
    """Every module an `import` or `from ... import` statement in `source` names (any depth)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def is_baselines(module: str) -> bool:
    return module == "baselines" or module.startswith("baselines.")


def test_imported_modules_sees_nested_and_from_imports() -> None:
    source = "import os\ndef f():\n    from baselines._snn import convert\n    import baselines\n"
    assert {m for m in imported_modules(source) if is_baselines(m)} == {"baselines._snn",
                                                                        "baselines"}


def test_dsr_never_imports_baselines() -> None:
    files = sorted((REPO_ROOT / "dsr").rglob("*.py"))
    assert files
    offenders = {str(f.relative_to(REPO_ROOT)): sorted(m for m in imported_modules(f.read_text())
                                                       if is_baselines(m))
                 for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_papers_maths_stands_alone() -> None:
    """dsr.snn (neurons, layers, phases, architectures) imports no other part of the project:
    no data, harness, method or config, at any depth."""
    files = sorted((REPO_ROOT / "dsr" / "snn").glob("*.py"))
    assert len(files) >= 4
    outside = {str(f.relative_to(REPO_ROOT)): sorted(
        m for m in imported_modules(f.read_text())
        if (m == "dsr" or m.startswith("dsr.") or is_baselines(m)) and not m.startswith("dsr.snn"))
        for f in files}
    assert {f: m for f, m in outside.items() if m} == {}


def test_no_source_file_is_over_the_line_limit() -> None:
    files = [f for folder in ("dsr", "baselines", "workflow", "bench")
             for pattern in ("*.py", "*.smk")
             for f in (REPO_ROOT / folder).rglob(pattern)]
    assert len(files) > 20
    long = {str(f.relative_to(REPO_ROOT)): n for f in files
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def module_graph() -> dict[str, set[str]]:
    """Module -> the project modules its module-level imports name (function-level imports,
    deliberate late imports, are left out; so is a package's own import of its parent)."""
    roots = {"dsr": REPO_ROOT / "dsr", "baselines": REPO_ROOT / "baselines",
             "pipeline": REPO_ROOT / "workflow" / "scripts" / "pipeline"}
    files = {}
    for top, folder in roots.items():
        for f in folder.rglob("*.py"):
            parts = (top, *f.relative_to(folder).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        named: set[str] = set()
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.Import):
                named |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                named |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in named if m in files and m != name
                       and not name.startswith(m + ".")}
    return graph


def test_no_import_circle() -> None:
    graph = module_graph()
    assert {"dsr.harness.train", "dsr.data.core", "baselines.sltt", "pipeline.grid"} <= set(graph)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import circle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
