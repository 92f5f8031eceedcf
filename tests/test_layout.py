"""The layout's rules: `dsr/` (method + harness) never imports `baselines/`, and no source file of
the method, the baselines or the workflow grows past MAX_LINES (split it by concept instead)."""

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


def test_no_source_file_is_over_the_line_limit() -> None:
    files = [f for folder in ("dsr", "baselines", "workflow") for pattern in ("*.py", "*.smk")
             for f in (REPO_ROOT / folder).rglob(pattern)]
    assert len(files) > 20
    long = {str(f.relative_to(REPO_ROOT)): n for f in files
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}
