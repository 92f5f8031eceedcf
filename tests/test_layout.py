"""The package layout's one rule: `dsr/` (method + harness) never imports `baselines/`."""

from __future__ import annotations

import ast

from dsr import REPO_ROOT


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
