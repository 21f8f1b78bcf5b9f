"""The signed manifest of a runtime bundle (docs/architecture.md §6.7).

`manifest.json` is canonical JSON (keys sorted, no spaces, UTF-8, no trailing newline):

    {"arch":"aarch64","files":[{"name":"units/voltbook-edge.service","sha256":"<64 hex>",
     "size":1234},…],"format":"voltbook-bundle/1","key_id":"<16 hex>","project":"0.1.0",
     "python":"cp311","version":7}

`files` is sorted by name and lists every file of the bundle but the manifest and its signature.
A bundle built `--with-simulator` (rehearsal and test boxes: its `voltbook` wheel carries the
meter simulator) also has `"simulator":true`; every other bundle has no such field, so its
manifest is byte for byte what installers that predate the field read.
`manifest.sig` is the 64-byte raw Ed25519 signature of the exact bytes of `manifest.json` by the
release key (`key_id`: first 8 bytes of SHA-256 of the raw public key, as `ledger.chain.key_id`).
The decoder faces the outside: any bytes give a `Manifest` or `BadBundle`, nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.chain import NodeKey, key_id
from voltbook_fw.errors import BadBundle

FORMAT = "voltbook-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNATURE_SIZE = 64
MAX_MANIFEST_BYTES = 1 << 20
ARCHES = ("aarch64", "armv7l", "x86_64")
# A file of a bundle: one folder, one plain name (no dot-files, no `..`, no separators).
NAME = re.compile(r"(wheels|units)/[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
KEY_ID = re.compile(r"[0-9a-f]{16}")
PYTHON_TAG = re.compile(r"cp3[0-9]{1,2}")
PROJECT_VERSION = re.compile(r"[0-9A-Za-z.+!-]{1,64}")
FIELDS = {"arch", "files", "format", "key_id", "project", "python", "version"}
SIMULATOR = "simulator"  # optional: present, and true, only in a simulator's bundle
MAX_VERSION = 2**53  # JSON-safe everywhere a manifest may be read


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    version: int
    arch: str
    python: str
    project: str
    key_id: str
    files: tuple[FileEntry, ...]
    simulator: bool = False

    def encode(self) -> bytes:
        body = {
            "arch": self.arch,
            "files": [
                {"name": f.name, "sha256": f.sha256, "size": f.size}
                for f in sorted(self.files, key=lambda f: f.name)
            ],
            "format": FORMAT,
            "key_id": self.key_id,
            "project": self.project,
            "python": self.python,
            "version": self.version,
        }
        if self.simulator:
            body[SIMULATOR] = True
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def entry(self, name: str) -> FileEntry | None:
        return next((f for f in self.files if f.name == name), None)


def sign(manifest: Manifest, release_key: NodeKey) -> tuple[bytes, bytes]:
    """The bytes of `manifest.json` and `manifest.sig`."""
    if manifest.key_id != release_key.key_id:
        raise ValueError("the manifest names another release key")
    data = manifest.encode()
    return data, release_key.private_key.sign(data)


def verified(data: bytes, signature: bytes, release_pub: Ed25519PublicKey) -> Manifest:
    """The manifest in `data` if `signature` is the release key's over exactly these bytes."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BadBundle(f"{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes: not a Voltbook bundle")
    if len(signature) != SIGNATURE_SIZE:
        raise BadBundle(f"{SIGNATURE} is {len(signature)} bytes, not {SIGNATURE_SIZE}")
    try:
        release_pub.verify(signature, data)
    except InvalidSignature:
        raise BadBundle(
            f"the manifest's signature is not the release key's ({key_id(release_pub)}): "
            "the bundle was altered or signed by another key; get the bundle again from the "
            "release, or check which release.pub this box trusts"
        ) from None
    manifest = decode(data)
    if manifest.key_id != key_id(release_pub):
        raise BadBundle(f"the manifest names key {manifest.key_id}, signed by another")
    if manifest.encode() != data:
        raise BadBundle(f"{MANIFEST} is not in canonical form")
    return manifest


def decode(data: bytes) -> Manifest:
    """Parse (not verify) manifest bytes: a `Manifest` or `BadBundle`."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadBundle(f"{MANIFEST} is not JSON: {exc}") from exc
    if not isinstance(body, dict) or set(body) - {SIMULATOR} != FIELDS:
        raise BadBundle(
            f"{MANIFEST} must have exactly the fields {sorted(FIELDS)} (and {SIMULATOR!r})"
        )
    simulator = body.get(SIMULATOR, False)
    if SIMULATOR in body and simulator is not True:
        raise BadBundle(f"{MANIFEST}: {SIMULATOR} is true when present, not {simulator!r:.20}")
    if body["format"] != FORMAT:
        raise BadBundle(
            f"bundle format {body['format']!r} is not {FORMAT!r}: use a newer installer"
        )
    version = body["version"]
    if type(version) is not int or not 1 <= version < MAX_VERSION:
        raise BadBundle(f"the bundle version must be a positive integer, not {version!r}")
    arch = _text(body, "arch")
    if arch not in ARCHES:
        raise BadBundle(f"unknown arch {arch!r} (known: {', '.join(ARCHES)})")
    python = _matching(body, "python", PYTHON_TAG)
    project = _matching(body, "project", PROJECT_VERSION)
    release_key_id = _matching(body, "key_id", KEY_ID)
    files = body["files"]
    if not isinstance(files, list):
        raise BadBundle(f"{MANIFEST}: files must be a list")
    entries = tuple(_file_entry(item) for item in files)
    names = [e.name for e in entries]
    if names != sorted(set(names)):
        raise BadBundle(f"{MANIFEST}: file names must be unique and sorted")
    return Manifest(version, arch, python, project, release_key_id, entries, simulator)


def _file_entry(item: Any) -> FileEntry:
    if not isinstance(item, dict) or set(item) != {"name", "sha256", "size"}:
        raise BadBundle(f"{MANIFEST}: each file is {{name, sha256, size}}, not {item!r:.80}")
    name = _matching(item, "name", NAME)
    digest = _matching(item, "sha256", SHA256_HEX)
    size = item["size"]
    if type(size) is not int or not 0 <= size < MAX_VERSION:
        raise BadBundle(f"{MANIFEST}: size of {name} must be a non-negative integer")
    return FileEntry(name, digest, size)


def _text(body: dict[str, Any], field: str) -> str:
    value = body[field]
    if not isinstance(value, str):
        raise BadBundle(f"{MANIFEST}: {field} must be a string")
    return value


def _matching(body: dict[str, Any], field: str, pattern: re.Pattern[str]) -> str:
    value = _text(body, field)
    if not pattern.fullmatch(value):
        raise BadBundle(f"{MANIFEST}: {field} {value!r:.80} is malformed")
    return value
