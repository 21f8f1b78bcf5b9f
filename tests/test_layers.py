"""The layers: what each deployable package may not import, checked on the source (ast).

`ledger/` is the contract edge and cloud share, so it imports neither; `edge/` runs on a
concentrator, which has no cloud and no simulator (simulated buses reach `demo/` only through
the `voltbook.simulation` entry point, `edge/site/simulation.py`). Every import counts: at the
top, inside a function, under `TYPE_CHECKING`, and `importlib.import_module("…")` of a literal.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package → the top-level packages it must never import (add a row per layer rule).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ledger": ("edge", "cloud", "demo"),
    "edge": ("demo", "cloud"),
}


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def _called(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for line, module in imported(tree):
            top = module.split(".")[0]
            if top in forbidden:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize(("package", "forbidden"), FORBIDDEN.items(), ids=list(FORBIDDEN))
def test_a_package_imports_nothing_of_the_layers_it_must_not_know(
    package: str, forbidden: tuple[str, ...]
) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    assert violations(package, forbidden) == []


def test_the_check_sees_every_kind_of_import() -> None:
    source = """
import demo.sim
from cloud.api import app
def f():
    from demo.sim.persist import SimulatedBuilding
if TYPE_CHECKING:
    import cloud
importlib.import_module("demo.sim.simulation")
from . import sibling
from edge.site import load_site
"""
    modules = sorted(module for _, module in imported(ast.parse(source)))
    assert modules == sorted(
        ["demo.sim", "cloud.api", "demo.sim.persist", "cloud", "demo.sim.simulation", "edge.site"]
    )
