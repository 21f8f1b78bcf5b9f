"""The concentrator's `voltbook` wheel: the part of the project a bundle carries.

The checkout's pyproject.toml describes the whole project: the server (`cloud`: payments, the
web console and its vendored scripts and fonts), the simulator (`demo`) and four commands. A
concentrator runs three packages of it and two commands, so a bundle's project wheel is built
from the table below, not from that pyproject: less to download over a site's 4G, no server or
payment code on the box, and no command there that cannot run.

    part          package        scripts          entry points
    the runtime   ledger         -                -
                  edge           voltbook-edge    -
                  voltbook_fw    voltbook-fw      -
    --with-       demo           voltbook-demo    voltbook.simulation (simulated buses)
    simulator

The rest is read from the project's pyproject.toml with tomllib: the distribution's name,
version and requires-python (the box's `voltbook-edge --version` and a manifest's `project` are
the project's), each script's and entry point's target, the packages' data files and the build
backend. Its dependencies are the names of requirements-edge.txt (the bundle pins them). The
wheel is built by `pip wheel --no-deps` of a clean folder that holds only those packages and a
pyproject.toml generated for them (`box_pyproject`). `check_box_wheel` checks a wheel against
the table, whether built here or taken from a wheelhouse.

The simulator is for rehearsal and test boxes only (a site whose buses are `simulated`).
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Final

from voltbook_fw.errors import BuildFailed

PROJECT: Final = "voltbook"
REQUIREMENTS: Final = "requirements-edge.txt"
# Never part of the project's wheel: checkouts, builds, caches, virtualenvs.
NOT_SOURCE: Final = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)


@dataclass(frozen=True, slots=True)
class Part:
    """A top-level package of the box (its subpackages come with it), where the checkout holds
    it, and the console scripts of pyproject's [project.scripts] it brings."""

    package: str
    folder: str
    scripts: tuple[str, ...] = ()


RUNTIME: Final = (
    Part("ledger", "."),
    Part("edge", ".", scripts=("voltbook-edge",)),
    Part("voltbook_fw", "firmware-tools", scripts=("voltbook-fw",)),
)
# `demo.cli` and `demo.sim` import only `edge`, `ledger` and the edge's pins, so the script
# runs on the box too; its acts that drive the cloud (`demo.cloud_act` …) do not, and are never
# imported by it.
SIMULATOR: Final = Part("demo", ".", scripts=("voltbook-demo",))


@dataclass(frozen=True, slots=True)
class BoxWheel:
    """What a box's `voltbook` wheel holds and declares."""

    name: str
    version: str
    requires_python: str
    dependencies: tuple[str, ...]
    parts: tuple[Part, ...]
    scripts: dict[str, str]
    entry_points: dict[str, dict[str, str]]
    package_data: dict[str, list[str]]
    build_system: dict[str, object]

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(part.package for part in self.parts)

    @property
    def simulator(self) -> bool:
        return SIMULATOR in self.parts

    @property
    def dist_info(self) -> str:
        return f"{re.sub(r'[-_.]+', '_', self.name)}-{self.version}.dist-info"


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file, by normalised name."""
    pins: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BuildFailed(f"cannot read {path}: {exc}; run from the project's folder") from exc
    for raw in lines:
        line = raw.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise BuildFailed(f"{path}: {line!r} is not pinned with ==")
            pins[normalise(name.split("[")[0].strip())] = version.strip()
    return pins


def box_wheel(project: Path, *, with_simulator: bool = False) -> BoxWheel:
    """The box's wheel as the table and the project's pyproject.toml describe it."""
    try:
        pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildFailed(f"cannot read {project / 'pyproject.toml'}: {exc}") from exc
    meta = pyproject["project"]
    parts = (*RUNTIME, SIMULATOR) if with_simulator else RUNTIME
    packages = {part.package for part in parts}
    missing = [name for part in parts for name in part.scripts if name not in meta["scripts"]]
    if missing:
        raise BuildFailed(f"pyproject.toml has no script {', '.join(missing)}")
    entry_points = {
        group: {name: target for name, target in points.items() if _top(target) in packages}
        for group, points in meta.get("entry-points", {}).items()
    }
    data = pyproject.get("tool", {}).get("setuptools", {}).get("package-data", {})
    return BoxWheel(
        name=meta["name"],
        version=meta["version"],
        requires_python=meta["requires-python"],
        dependencies=tuple(read_pins(project / REQUIREMENTS)),
        parts=parts,
        scripts={name: meta["scripts"][name] for part in parts for name in part.scripts},
        entry_points={group: points for group, points in entry_points.items() if points},
        package_data={name: list(globs) for name, globs in data.items() if name in packages},
        build_system=pyproject["build-system"],
    )


def _top(target: str) -> str:
    """The top-level package of an entry point's `module.sub:object`."""
    return re.split(r"[.:]", target, maxsplit=1)[0]


def box_pyproject(box: BoxWheel, packages: list[str]) -> str:
    """The pyproject.toml of the clean folder `pip wheel` builds the box's wheel from."""
    tables: dict[tuple[str, ...], dict[str, object]] = {
        ("build-system",): box.build_system,
        ("project",): {
            "name": box.name,
            "version": box.version,
            "description": "Voltbook on a concentrator: the runtime, its ledger and updater",
            "requires-python": box.requires_python,
            "dependencies": list(box.dependencies),
        },
        ("project", "scripts"): dict(box.scripts),
    }
    for group, points in box.entry_points.items():
        tables[("project", "entry-points", group)] = dict(points)
    tables[("tool", "setuptools")] = {"packages": packages}
    tables[("tool", "setuptools", "package-data")] = dict(box.package_data)
    return "\n".join(_toml_table(path, values) for path, values in tables.items())


def _toml_table(path: tuple[str, ...], values: dict[str, object]) -> str:
    lines = [f"[{'.'.join(_toml_key(p) for p in path)}]"]
    lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: object) -> str:
    """Strings and lists of them: JSON's escapes are TOML's."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "[" + ", ".join(json.dumps(item) for item in value) + "]"
    raise BuildFailed(f"cannot write {value!r} into the box's pyproject.toml")


def pip_wheel_project(project: Path, into: Path, box: BoxWheel) -> None:
    """`pip wheel --no-deps` of a clean folder: the box's packages copied from the checkout
    (setuptools leaves `build/` and `*.egg-info` in the tree it builds, and a stale `build/lib`
    would put deleted modules in the wheel) and the pyproject.toml generated for them."""
    with tempfile.TemporaryDirectory(prefix="voltbook-source-") as work:
        source = Path(work) / "source"
        source.mkdir()
        for part in box.parts:
            shutil.copytree(
                project / part.folder / part.package,
                source / part.package,
                ignore=shutil.ignore_patterns(*NOT_SOURCE),
            )
        packages = sorted(
            ".".join(init.parent.relative_to(source).parts) for init in source.rglob("__init__.py")
        )
        (source / "pyproject.toml").write_text(box_pyproject(box, packages), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(into), str(source)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
            raise BuildFailed(f"the box's {PROJECT} wheel could not be built:\n{tail}")


def check_box_wheel(wheel: Path, box: BoxWheel) -> None:
    """The wheel holds the box's packages and nothing else of the project, declares exactly the
    box's scripts, entry points and dependencies, and is the project's version."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            entry_points = _read(archive, f"{box.dist_info}/entry_points.txt")
            metadata = _read(archive, f"{box.dist_info}/METADATA")
    except (OSError, zipfile.BadZipFile) as exc:
        raise BuildFailed(f"{wheel.name} is not a readable wheel: {exc}") from exc
    where = f"{wheel.name}, the box's {PROJECT} wheel,"
    tops = {name.split("/")[0] for name in names} - {box.dist_info}
    if extra := sorted(tops - set(box.packages)):
        hint = (
            " (the simulator: for a rehearsal or test box, bundle --with-simulator)"
            if extra == [SIMULATOR.package]
            else ""
        )
        raise BuildFailed(
            f"{where} carries {', '.join(extra)}{hint}; a concentrator carries only "
            f"{', '.join(box.packages)}: take it out of the wheelhouse and the bundle builds "
            "the box's own"
        )
    if missing := sorted(set(box.packages) - tops):
        raise BuildFailed(f"{where} lacks {', '.join(missing)}")
    points = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    points.optionxform = str  # type: ignore[assignment,method-assign]  # names keep their case
    points.read_string(entry_points)
    declared = {group: dict(points[group]) for group in points.sections()}
    wanted = {"console_scripts": box.scripts, **box.entry_points}
    if declared != wanted:
        raise BuildFailed(f"{where} declares {declared}, not {wanted}")
    parsed = HeaderParser().parsestr(metadata)
    if parsed["Version"] != box.version:
        raise BuildFailed(f"{where} is version {parsed['Version']}, the project {box.version}")
    requires = sorted(normalise(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0])
                      for r in parsed.get_all("Requires-Dist") or [])  # fmt: skip
    if requires != sorted(box.dependencies):
        raise BuildFailed(f"{where} requires {requires}, not {REQUIREMENTS}'s names")


def _read(archive: zipfile.ZipFile, name: str) -> str:
    try:
        return archive.read(name).decode("utf-8")
    except KeyError:
        raise BuildFailed(f"{archive.filename}: no {name}") from None
