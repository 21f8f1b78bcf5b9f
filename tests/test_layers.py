"""The import rules of docs/architecture.md, checked on the source: which package may import
which, and no import cycles between modules.

    ledger   imports nothing of ours           (the contract: pure, shared by edge and cloud)
    edge     imports ledger                    (the concentrator)
    cloud    imports ledger                    (the server; never the edge)
    demo     imports anything                  (the simulated site, the demo acts)

Inside `cloud/`, a package imports only its own modules and the layers below it (`CLOUD_LAYERS`,
lowest first), so the shell wires domains together and no domain reaches back up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("ledger", "edge", "cloud", "demo", "voltbook_fw")
MAY_IMPORT = {
    "ledger": {"ledger"},
    "edge": {"ledger", "edge"},
    "cloud": {"ledger", "cloud"},
    "voltbook_fw": {"ledger", "voltbook_fw", "cloud"},
    "demo": set(OURS),
}
CLOUD_LAYERS: list[set[str]] = [
    {
        "cloud.errors",
        "cloud.keys",
        "cloud.config",
        "cloud.database_url",
        "cloud.services",
        "cloud.logs",
        "cloud.heap",
    },
    {"cloud.db"},
    {"cloud.migrations", "cloud.chains", "cloud.people", "cloud.metrics"},
    {"cloud.registry", "cloud.reports"},
    {"cloud.operations", "cloud.backups"},
    {"cloud.payments", "cloud.notices"},
    {"cloud.ingest"},
    {"cloud.api"},
    {"cloud.web"},  # pages: the API's session, clock and guards, the same services below
    {"cloud.app", "cloud.server", "cloud.cli", "cloud.cli_backup"},
]
LAYER_OF = {name: level for level, names in enumerate(CLOUD_LAYERS) for name in names}


def modules() -> Iterator[tuple[str, Path]]:
    for top in OURS:
        base = ROOT / "firmware-tools" if top == "voltbook_fw" else ROOT
        for path in sorted((base / top).rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def imports(path: Path, *, top_level_only: bool = False) -> Iterator[str]:
    """The modules `path` imports (for `from a import b`: `a.b` when that is a module, else a):
    at the top, inside functions, under `TYPE_CHECKING`, and `import_module("…")` of a literal."""
    yield from imported(ast.parse(path.read_text()), top_level_only=top_level_only)


def imported(tree: ast.Module, *, top_level_only: bool = False) -> Iterator[str]:
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in KNOWN else node.module
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value


def _called(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else None


KNOWN = dict(modules())


def cloud_unit(module: str) -> str:
    """`cloud.operations.refunds` → `cloud.operations`; `cloud.app` → `cloud.app`."""
    return ".".join(module.split(".")[:2])


def test_every_package_imports_only_what_it_may() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, path in KNOWN.items()
        for target in imports(path)
        if target.split(".")[0] in OURS
        and target.split(".")[0] not in MAY_IMPORT[name.split(".")[0]]
    ]
    assert wrong == []


def test_cloud_packages_import_only_their_own_layer_or_below() -> None:
    wrong = []
    for name, path in KNOWN.items():
        if not name.startswith("cloud."):
            continue
        unit = cloud_unit(name)
        assert unit in LAYER_OF, f"{unit} has no layer in CLOUD_LAYERS: give it one"
        for target in imports(path):
            if not target.startswith("cloud.") or cloud_unit(target) == unit:
                continue
            there, here = LAYER_OF[cloud_unit(target)], LAYER_OF[unit]
            if there > here or (there == here and here not in (0, len(CLOUD_LAYERS) - 1)):
                wrong.append(f"{name} ({unit}) imports {target} ({cloud_unit(target)})")
    assert wrong == []


def test_no_import_cycles_between_modules() -> None:
    graph = {
        name: {t for t in imports(path, top_level_only=True) if t in KNOWN and t != name}
        for name, path in KNOWN.items()
    }
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_every_package_of_ours_has_rules() -> None:
    inits = [*ROOT.glob("*/__init__.py"), *(ROOT / "firmware-tools").glob("*/__init__.py")]
    packages = {init.parent.name for init in inits}
    assert packages - {"tests", "bench"} - set(OURS) == set(), "add the new package to OURS"


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
    found = sorted(imported(ast.parse(source)))
    assert found == sorted(
        [
            "demo.sim",
            "cloud.api",
            "demo.sim.persist",
            "cloud",
            "demo.sim.simulation",
            "edge.site",
        ]
    )
