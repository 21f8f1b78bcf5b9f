"""A wheelhouse made with no network, for the demo's act 6 (`voltbook-fw bundle --wheelhouse`)
and the bundle tests.

The dependencies are the very distributions this test environment has installed (the edge's
pins and what they pull in), zipped back into wheels from their RECORD, with their original tags
from their WHEEL file: the same files pip would download. The project's wheel is zipped from
this checkout as setuptools lays it out (the packages, `cloud`'s migration scripts, METADATA,
the console scripts and entry points of pyproject.toml). Building it with `pip wheel` would need
setuptools ≥ 77 from the network (build isolation) or in this venv (it has 65); the bundle
command itself does use `pip wheel`, and the README's figures come from that real run.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
PACKAGES = {"ledger": ROOT, "edge": ROOT, "cloud": ROOT, "demo": ROOT}
PACKAGES["voltbook_fw"] = ROOT / "firmware-tools"


def build_wheelhouse(into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    wheels = [repack(name, into) for name in sorted(edge_dependencies())]
    return [*wheels, project_wheel(into)]


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


def project_wheel(into: Path) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = project["version"]
    info = f"voltbook-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for package, base in PACKAGES.items():
        for path in sorted((base / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append((path.relative_to(base).as_posix(), path.read_bytes()))
    requires = "".join(f"Requires-Dist: {r}\n" for r in project["dependencies"])
    meta = f"Metadata-Version: 2.1\nName: voltbook\nVersion: {version}\n{requires}"
    scripts = "".join(f"{k} = {v}\n" for k, v in project["scripts"].items())
    entry_points = f"[console_scripts]\n{scripts}"
    for group, points in project.get("entry-points", {}).items():
        entry_points += f"\n[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
    files += [
        (f"{info}/METADATA", meta.encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{info}/entry_points.txt", entry_points.encode()),
    ]
    out = into / f"voltbook-{version}-py3-none-any.whl"
    write_wheel(out, files, f"{info}/RECORD")
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
