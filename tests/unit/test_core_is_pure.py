"""The pure core imports only the stdlib, pydantic and itself: no broker or database client."""

import ast
import importlib
from pathlib import Path

import pytest

CORE = ["agents.core.settlement", "agents.core.features", "agents.core.rules"]
FORBIDDEN = {"faust", "aiokafka", "aiosqlite", "sqlite3", "mode"}


def _imported_roots(module: str) -> set[str]:
    source = Path(importlib.import_module(module).__file__ or "").read_text()
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", CORE)
def test_core_module_never_imports_framework_or_store(module: str) -> None:
    assert _imported_roots(module) & FORBIDDEN == set()


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_only_stdlib_pydantic_and_core(module: str) -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"pydantic", "__future__", "agents"}
    roots = _imported_roots(module)
    assert roots <= allowed, roots - allowed
    agents_imports = {
        n.module
        for n in ast.walk(
            ast.parse(Path(importlib.import_module(module).__file__ or "").read_text())
        )
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("agents")
    }
    assert agents_imports <= set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_core_module_declares_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__
    for name in mod.__all__:
        assert hasattr(mod, name), name
