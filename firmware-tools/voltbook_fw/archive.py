"""The bundle file: a plain POSIX tar (pax), written reproducibly and read as untrusted.

Written: `manifest.json`, `manifest.sig`, then every file of the manifest in its order; regular
files only, mode 0644, owner 0:0, no names, mtime 0, no compression (wheels are zip already), so
the same inputs give the same bytes. Read: `read_members` accepts only regular files with a name
a manifest may hold (or the manifest and its signature), each once; a link, a device, a folder
entry, an absolute or `..` name is `BadBundle` before any byte is extracted.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voltbook_fw.errors import BadBundle
from voltbook_fw.manifest import MANIFEST, MAX_MANIFEST_BYTES, NAME, SIGNATURE

CHUNK = 1 << 16


def write_bundle(
    out: Path, manifest: bytes, signature: bytes, files: list[tuple[str, Path]]
) -> None:
    """Write the tar to `out` (via a temporary name, renamed when complete)."""
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info(MANIFEST, len(manifest)), io.BytesIO(manifest))
        tar.addfile(_info(SIGNATURE, len(signature)), io.BytesIO(signature))
        for name, path in files:
            with path.open("rb") as handle:
                tar.addfile(_info(name, path.stat().st_size), handle)
    partial.replace(out)


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    size: int
    info: tarfile.TarInfo


def read_members(tar: tarfile.TarFile) -> dict[str, Member]:
    """Every member by name, once each, after checking each one's kind and name."""
    members: dict[str, Member] = {}
    try:
        infos = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BadBundle(f"not a readable tar file: {exc}") from exc
    for info in infos:
        name = info.name
        if info.issym() or info.islnk():
            raise BadBundle(f"the bundle holds a link {name!r} → {info.linkname!r}: refused")
        if not info.isreg():
            raise BadBundle(f"the bundle holds {name!r}, which is not a regular file: refused")
        if name not in (MANIFEST, SIGNATURE) and not NAME.fullmatch(name):
            raise BadBundle(
                f"the bundle holds {name!r}: only manifest.json, manifest.sig, wheels/NAME and "
                "units/NAME may be in a bundle (absolute and `..` names are refused)"
            )
        if name in members:
            raise BadBundle(f"the bundle holds {name!r} twice: refused")
        members[name] = Member(name, info.size, info)
    for needed in (MANIFEST, SIGNATURE):
        if needed not in members:
            raise BadBundle(f"the bundle has no {needed}: not a Voltbook bundle")
    if members[MANIFEST].size > MAX_MANIFEST_BYTES:
        raise BadBundle(f"{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes: not a Voltbook bundle")
    return members


def read_small(tar: tarfile.TarFile, member: Member) -> bytes:
    return b"".join(_chunks(tar, member))


def copy_hashed(tar: tarfile.TarFile, member: Member, out: Path) -> tuple[str, int]:
    """Write the member to `out` (a new file); its SHA-256 hex and the bytes actually read."""
    digest = hashlib.sha256()
    size = 0
    with out.open("xb") as handle:
        for chunk in _chunks(tar, member):
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)
    return digest.hexdigest(), size


def _chunks(tar: tarfile.TarFile, member: Member) -> Iterator[bytes]:
    try:
        source = tar.extractfile(member.info)
        if source is None:
            raise BadBundle(f"{member.name} cannot be read from the bundle")
        with source:
            while chunk := source.read(CHUNK):
                yield chunk
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadBundle(f"{member.name} is cut short or unreadable: {exc}") from exc
