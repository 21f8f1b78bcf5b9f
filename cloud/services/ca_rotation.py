"""Rotating the broker's CA with both CAs trusted in between.

The CA in the data directory's `pki/` (`ca.crt`, `ca.key`) certifies the broker and every
concentrator (`cloud.services.pki`). To replace it without cutting a box off:

1. `stage`: a new CA is made beside it (`ca-next.crt`, `ca-next.key`). From then on the broker
   trusts both for client certificates (`trust_bundle`: `trust.pem`, the new CA first), the
   certificates the cloud issues to boxes (`POST /provision`, `voltbook-cloud device-cert`)
   come from the new CA (`issuing_ca`), and a box is handed both CAs, so it trusts the broker's
   certificate whichever CA issued it. The broker's own certificate still comes from the old
   CA, which every box trusts already.
2. Boxes get certificates from the new CA and the bundle as their `[cloud] ca` (provisioned
   anew, or `voltbook-cloud device-cert` copied over), while both keep working.
3. `finish`: the new CA becomes `ca.crt`/`ca.key`; the old CA's key is deleted and its
   certificate kept as `ca-retired-<serial>.crt` for the record. The broker (restarted) has a
   certificate from the new CA and trusts only it: a certificate of the old CA is refused.

Run each step with the cloud stopped and start it again after: the broker reads its CA files
at start, and `finish` is three renames, not one.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud.services.pki import CaFiles, create_ca, load_certificate

NEXT = "ca-next"
BUNDLE = "trust.pem"


class RotationRefused(ValueError):
    """The CA rotation step does not fit the state of `pki/` (the message says which step)."""


def current_ca(directory: Path) -> CaFiles:
    return CaFiles(cert=directory / "ca.crt", key=directory / "ca.key")


def next_ca(directory: Path) -> CaFiles | None:
    """The staged new CA, or None outside a rotation."""
    files = CaFiles(cert=directory / f"{NEXT}.crt", key=directory / f"{NEXT}.key")
    return files if files.cert.is_file() and files.key.is_file() else None


def issuing_ca(directory: Path) -> CaFiles:
    """The CA that certifies boxes now: the new one during a rotation."""
    return next_ca(directory) or current_ca(directory)


def trust_bundle(directory: Path) -> Path:
    """The CA certificates to trust (`trust.pem`, rewritten atomically): the new CA, if one is
    staged, then the current one. Outside a rotation: just the current CA's."""
    staged = next_ca(directory)
    current = current_ca(directory).cert
    if staged is None:
        return current
    pem = b"".join(
        load_certificate(path).public_bytes(serialization.Encoding.PEM)
        for path in (staged.cert, current)
    )
    bundle = directory / BUNDLE
    temporary = directory / f".{BUNDLE}.{os.getpid()}.tmp"
    temporary.write_bytes(pem)
    os.replace(temporary, bundle)
    return bundle


def stage(directory: Path, name: str = "Voltbook CA") -> CaFiles:
    """Make the new CA beside the current one (step 1)."""
    current = current_ca(directory)
    if not (current.cert.is_file() and current.key.is_file()):
        raise RotationRefused(f"{directory} holds no CA to rotate (the cloud makes one at start)")
    if next_ca(directory) is not None:
        raise RotationRefused(
            f"a new CA is staged already ({directory / NEXT}.crt): finish that rotation first"
        )
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return create_ca(directory, f"{name} {made}", stem=NEXT)


def finish(directory: Path) -> CaFiles:
    """Make the staged CA the only one (step 3): the new current CA's files."""
    staged = next_ca(directory)
    if staged is None:
        raise RotationRefused(f"no new CA is staged in {directory}: nothing to finish")
    current = current_ca(directory)
    old: x509.Certificate = load_certificate(current.cert)
    os.replace(current.cert, directory / f"ca-retired-{old.serial_number:x}.crt")
    os.replace(staged.key, current.key)  # the old CA's key is overwritten: it issues no more
    os.replace(staged.cert, current.cert)
    (directory / BUNDLE).unlink(missing_ok=True)
    return current
