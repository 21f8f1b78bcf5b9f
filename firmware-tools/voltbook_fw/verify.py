"""Check a bundle whole before anything of it is used: structure, signature, hashes, sizes.

Order (cheapest refusal first, nothing written outside `staging`): the tar's members (regular
files with allowed names, each once) → the release key's signature over `manifest.json` → the
manifest's schema → the members are exactly the manifest's files → the box (arch, Python,
version higher than installed) → each file's size and SHA-256 while it is copied into `staging`.
Any failure raises `BadBundle` or `WrongBox`; `staging` is the caller's to throw away.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from voltbook_fw.archive import copy_hashed, read_members, read_small
from voltbook_fw.errors import BadBundle, WrongBox
from voltbook_fw.manifest import MANIFEST, SIGNATURE, Manifest, verified


@dataclass(frozen=True, slots=True)
class Box:
    """What the bundle must fit: this box's arch and Python, and its installed version."""

    arch: str
    python: str
    installed: int  # 0 when nothing is installed


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    staging: Path  # every file of the manifest, checked, under its manifest name


def verify_bundle(
    bundle: Path, release_pub: Ed25519PublicKey, box: Box, staging: Path
) -> VerifiedBundle:
    try:
        tar = tarfile.open(bundle, mode="r:")  # noqa: SIM115 (closed by the `with` below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadBundle(f"{bundle} is not a readable (uncompressed) tar: {exc}") from exc
    with tar:
        members = read_members(tar)
        data = read_small(tar, members[MANIFEST])
        signature = read_small(tar, members[SIGNATURE])
        manifest = verified(data, signature, release_pub)
        listed = {f.name for f in manifest.files}
        present = set(members) - {MANIFEST, SIGNATURE}
        if missing := sorted(listed - present):
            raise BadBundle(f"the bundle lacks {', '.join(missing)}: it is incomplete")
        if extra := sorted(present - listed):
            raise BadBundle(
                f"the bundle holds {', '.join(extra)}, not listed in the manifest: refused"
            )
        check_fits(manifest, box)
        for entry in manifest.files:
            member = members[entry.name]
            if member.size != entry.size:
                raise BadBundle(
                    f"{entry.name} is {member.size} bytes, the manifest says {entry.size}"
                )
            out = staging / entry.name
            out.parent.mkdir(parents=True, exist_ok=True)
            digest, size = copy_hashed(tar, member, out)
            if size != entry.size or digest != entry.sha256:
                raise BadBundle(
                    f"{entry.name} does not match its SHA-256 in the manifest: the bundle was "
                    "damaged in transit or altered; copy it again"
                )
    return VerifiedBundle(manifest, data, signature, staging)


def check_fits(manifest: Manifest, box: Box) -> None:
    if manifest.arch != box.arch:
        raise WrongBox(
            f"the bundle is for {manifest.arch}, this box is {box.arch}: build one with "
            f"`voltbook-fw bundle --arch {box.arch}`"
        )
    if manifest.python != box.python:
        raise WrongBox(
            f"the bundle's wheels are for {manifest.python}, this box runs {box.python}: "
            "build it with --python for this box's Python"
        )
    if manifest.version <= box.installed:
        raise WrongBox(
            f"the bundle is version {manifest.version} and version {box.installed} is installed: "
            "only a higher version is installed (build a new bundle with a higher --version)"
        )
