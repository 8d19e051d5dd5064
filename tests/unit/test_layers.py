"""The layer rule: imports point from the edges into the core, never back.

    cli ──► streams ──► agents (handlers, context) ──► compute ──► store ──► core
                  └───► data (generator, importer) ─────────────────┘
    agents and compute also use the shared policies (retry, metrics), which know the store's
    errors; every layer may read config; config and core import nothing of the project's

`LAYERS` names each layer's modules (the longest matching prefix wins) and `MAY_IMPORT` the
layers it may import; any other arrow fails, lazy imports inside functions included.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "streams", "config")

LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("agents.core",),
    "config": ("config",),
    "store": ("agents.store",),
    "policy": ("agents.retry", "agents.metrics"),
    "compute": ("agents.compute",),
    "data": ("agents.data",),
    "agents": ("agents",),
    "streams": ("streams",),
    "cli": ("streams.cli",),
}
MAY_IMPORT: dict[str, set[str]] = {
    "core": {"core"},
    "config": {"config"},
    "store": {"store", "core", "config"},
    "policy": {"policy", "store", "config"},
    "compute": {"compute", "store", "policy", "core", "config"},
    "data": {"data", "store", "core", "config"},
    "agents": {"agents", "compute", "store", "policy", "core", "config"},
    "streams": {"streams", "agents", "compute", "data", "store", "policy", "core", "config"},
    "cli": set(LAYERS),
}
# Beyond the stdlib: what the pure core and the settings may use.
CORE_LIBRARIES = {"pydantic", "orjson", "numpy", "numba"}  # numba: the shard kernel
CONFIG_LIBRARIES = {"pydantic"}


def _modules() -> list[str]:
    found = []
    for package in PACKAGES:
        found.append(package)
        path = [str(ROOT / package)]
        found += [m.name for m in pkgutil.walk_packages(path, f"{package}.")]
    return sorted(found)


def layer_of(module: str) -> str:
    matches = [
        (len(prefix), layer)
        for layer, prefixes in LAYERS.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer"
    return max(matches)[1]


def _source(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_source(module).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from agents import classifier_agent` imports the module agents.classifier_agent
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(found)


MODULES = _modules()


def violations(module: str, imported: frozenset[str]) -> list[str]:
    """The project modules among `imported` that `module`'s layer may not import."""
    layer = layer_of(module)
    return sorted(
        f"{name} ({layer_of(name)})"
        for name in imported
        if name in MODULES and layer_of(name) not in MAY_IMPORT[layer]
    )


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_into_the_core(module: str) -> None:
    wrong = violations(module, imports_of(module))
    assert not wrong, f"{module} ({layer_of(module)}) may not import {wrong}"


@pytest.mark.parametrize("module", [m for m in MODULES if layer_of(m) in ("core", "config")])
def test_core_and_config_use_only_the_stdlib_and_their_libraries(module: str) -> None:
    libraries = CORE_LIBRARIES if layer_of(module) == "core" else CONFIG_LIBRARIES
    allowed = set(sys.stdlib_module_names) | libraries | {"__future__", *PACKAGES}
    roots = {name.split(".")[0] for name in imports_of(module)}
    assert roots <= allowed, roots - allowed
    # sqlite3 is in the stdlib, and no less a store for it
    assert "sqlite3" not in roots


@pytest.mark.parametrize("module", [m for m in MODULES if layer_of(m) == "core"])
def test_core_modules_declare_what_they_export(module: str) -> None:
    source = _source(module).read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree), f"{module} has no docstring"
    if not module.endswith("__init__") and _source(module).name != "__init__.py":
        assert "__all__" in source, f"{module} declares no __all__"


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("agents.ingest_agent", "streams.runtime"),  # an agent reaching for the plumbing
        ("agents.core.rules", "config.thresholds"),  # the core reading settings
        ("config.settings", "agents.core.errors"),  # config is a leaf
        ("agents.store.sqlite", "agents.compute.rebuild"),  # the store calling up
        ("streams.app", "streams.cli.main"),  # nothing but the CLI is above the plumbing
    ],
)
def test_the_rule_catches_a_wrong_arrow(module: str, imported: str) -> None:
    assert violations(module, frozenset({imported})) == [f"{imported} ({layer_of(imported)})"]


def test_every_module_is_in_a_layer() -> None:
    assert {layer_of(module) for module in MODULES} == set(LAYERS)


def test_the_shard_libraries_load_only_in_processes_that_compute_shards() -> None:
    # numba, numpy, pyarrow and ADBC take ≈ 0.6 s to import: a worker, its feature processes and
    # every command but the rebuild start without them.
    heavy = ("numpy", "numba", "pyarrow", "adbc_driver_sqlite")
    code = (
        "import sys, streams.app, streams.cli.main, agents.compute.feature_pool, "
        f"agents.compute.rebuild; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
