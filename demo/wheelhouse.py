"""A wheelhouse made with no network, for the demo's act 6 (`voltbook-fw bundle --wheelhouse`)
and the bundle tests.

The dependencies are the very distributions this test environment has installed (the edge's
pins and what they pull in), zipped back into wheels from their RECORD, with their original tags
from their WHEEL file: the same files pip would download. The project's wheel is the box's
(`voltbook_fw.box_wheel`: `ledger`, `edge`, `voltbook_fw`, and `demo` with `with_simulator`),
zipped from this checkout as setuptools lays it out (the modules and package data, METADATA,
the console scripts and entry points), which the bundle checks as it checks its own. Building
it with `pip wheel` needs setuptools from an index (build isolation); the bundle command does
that when the wheelhouse holds no project wheel, and the README's figures come from that run.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import re
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from voltbook_fw.box_wheel import box_wheel

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
PURE_WHEEL = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def build_wheelhouse(into: Path, *, with_simulator: bool = False) -> list[Path]:
    """The edge's wheels and the box's project wheel (with the simulator, for a rehearsal)."""
    into.mkdir(parents=True, exist_ok=True)
    wheels = [repack(name, into) for name in sorted(edge_dependencies())]
    return [*wheels, project_wheel(into, with_simulator=with_simulator)]


def edge_dependencies() -> set[str]:
    """The pins of requirements-edge.txt and, recursively, what each installed one requires."""
    todo = [
        line.split("==")[0].strip()
        for line in (ROOT / "requirements-edge.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def repack(name: str, into: Path) -> Path:
    dist = metadata.distribution(name)
    info_dir = next(p for p in dist.files or [] if p.parts[0].endswith(".dist-info")).parts[0]
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    tag = "-".join(".".join(sorted({t.split("-")[i] for t in tags})) for i in range(3))
    dist_name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    out = into / f"{dist_name}-{dist.version}-{tag}.whl"
    files: list[tuple[str, bytes]] = []
    for path in dist.files or []:
        text = str(path)
        if text.startswith("..") or "__pycache__" in path.parts:
            continue
        if path.parts[0] == info_dir and path.name in SKIPPED_DIST_INFO:
            continue
        files.append((text, Path(str(dist.locate_file(path))).read_bytes()))
    write_wheel(out, files, f"{info_dir}/RECORD")
    return out


def project_wheel(into: Path, *, with_simulator: bool = False) -> Path:
    box = box_wheel(ROOT, with_simulator=with_simulator)
    files: list[tuple[str, bytes]] = []
    for part in box.parts:
        base = ROOT / part.folder
        data = box.package_data.get(part.package, [])
        for path in sorted((base / part.package).rglob("*")):
            name = path.relative_to(base / part.package).as_posix()
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and (
                    (path.suffix == ".py" and (path.parent / "__init__.py").exists())
                    or any(fnmatch.fnmatch(name, glob) for glob in data)
                )
            ):
                files.append((path.relative_to(base).as_posix(), path.read_bytes()))
    requires = "".join(f"Requires-Dist: {name}\n" for name in box.dependencies)
    meta = f"Metadata-Version: 2.1\nName: {box.name}\nVersion: {box.version}\n{requires}"
    entry_points = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in box.scripts.items())
    for group, points in box.entry_points.items():
        entry_points += f"\n[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
    files += [
        (f"{box.dist_info}/METADATA", meta.encode()),
        (f"{box.dist_info}/WHEEL", PURE_WHEEL),
        (f"{box.dist_info}/entry_points.txt", entry_points.encode()),
    ]
    out = into / f"{box.name}-{box.version}-py3-none-any.whl"
    write_wheel(out, files, f"{box.dist_info}/RECORD")
    return out


def write_wheel(out: Path, files: list[tuple[str, bytes]], record_name: str) -> None:
    record = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files:
            wheel.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")
        record.append(f"{record_name},,")
        wheel.writestr(record_name, "\n".join(record) + "\n")
