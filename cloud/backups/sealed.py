"""The sealed file: a stream encrypted and authenticated with AES-256-GCM, chunk by chunk, so a
backup of any size is sealed and opened in constant memory, and any change is refused.

    header (34 bytes, authenticated as part of every chunk's associated data)
      0  magic     8  b"VBBACKUP"
      8  version   1  1
      9  kdf       1  0: key file (HKDF-SHA256 of its 32 bytes), 1: passphrase (scrypt, then HKDF)
     10  log2_n    1  scrypt cost (0 for a key file)
     11  r         1  scrypt block size (0 for a key file)
     12  p         1  scrypt parallelism (0 for a key file)
     13  reserved  1  0
     14  chunk     4  plaintext bytes per chunk, big-endian (the last chunk may be shorter)
     18  salt     16  random per file: the file's own key is HKDF(secret, salt)
    chunk i (i = 0, 1, …), one or more
      0  length    4  ciphertext bytes, big-endian (plaintext + the 16-byte tag)
      4  sealed    …  AES-256-GCM(file key, nonce = i as 12 bytes big-endian,
                                  associated data = header | i as 8 bytes | final as 1 byte)

The last chunk has final = 1 (an empty stream is one empty final chunk). Because the header,
the chunk's index and whether it is the last are all authenticated, an edited byte, a chunk
moved, dropped or repeated, a file cut at a chunk boundary, bytes appended or a header changed
all fail to open (`SealBroken`), as does the wrong key. `open_sealed` writes plaintext as chunks
authenticate: its caller writes into a scratch file and uses it only once the whole file opened.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cloud.backups import SealBroken
from cloud.backups.keys import KeyFile, KeySource, Passphrase

MAGIC = b"VBBACKUP"
VERSION = 1
HEADER = struct.Struct(">8sBBBBBBI16s")
LENGTH = struct.Struct(">I")
TAG = 16
CHUNK = 1 << 20
KDF_KEY_FILE, KDF_SCRYPT = 0, 1
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
# What a header may ask of scrypt and of memory: a forged header must not make us spin or swell.
SCRYPT_BOUNDS = {"log2_n": (14, 20), "r": (1, 16), "p": (1, 4)}
CHUNK_BOUNDS = (4096, 16 << 20)
INFO = b"voltbook/backup/v1"


@dataclass(frozen=True, slots=True)
class Header:
    kdf: int
    log2_n: int
    r: int
    p: int
    chunk: int
    salt: bytes

    def encode(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.kdf, self.log2_n, self.r, self.p, 0, self.chunk,
                           self.salt)  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        if len(raw) < HEADER.size:
            raise SealBroken("not a sealed backup: shorter than its header")
        magic, version, kdf, log2_n, r, p, reserved, chunk, salt = HEADER.unpack(raw)
        if magic != MAGIC:
            raise SealBroken("not a sealed backup (no VBBACKUP header)")
        if version != VERSION or reserved:
            raise SealBroken(f"a sealed backup of format version {version}: this reads {VERSION}")
        if not CHUNK_BOUNDS[0] <= chunk <= CHUNK_BOUNDS[1]:
            raise SealBroken(f"the header's chunk size {chunk} is out of bounds")
        if kdf == KDF_SCRYPT:
            for name, value in (("log2_n", log2_n), ("r", r), ("p", p)):
                low, high = SCRYPT_BOUNDS[name]
                if not low <= value <= high:
                    raise SealBroken(f"the header's scrypt {name} {value} is out of bounds")
        elif kdf != KDF_KEY_FILE or (log2_n, r, p) != (0, 0, 0):
            raise SealBroken(f"the header names an unknown key derivation ({kdf})")
        return cls(kdf, log2_n, r, p, chunk, salt)


def _file_key(header: Header, key: KeySource) -> bytes:
    if isinstance(key, KeyFile):
        if header.kdf != KDF_KEY_FILE:
            raise SealBroken("this backup was sealed with a passphrase, not a key file")
        secret = key.secret
    else:
        if header.kdf != KDF_SCRYPT:
            raise SealBroken("this backup was sealed with a key file, not a passphrase")
        scrypt = Scrypt(salt=header.salt, length=32, n=1 << header.log2_n, r=header.r,
                        p=header.p)  # fmt: skip
        secret = scrypt.derive(key.text.encode("utf-8"))
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=header.salt, info=INFO)
    return hkdf.derive(secret)


def _associated(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def seal(
    source: BinaryIO,
    sink: BinaryIO,
    key: KeySource,
    *,
    chunk: int = CHUNK,
    scrypt_log2_n: int = SCRYPT_LOG2_N,
) -> int:
    """Seal everything `source` holds into `sink`; the bytes written. `scrypt_log2_n` is the
    passphrase's stretching cost (2**17 rounds: about 128 MiB and a fraction of a second)."""
    if isinstance(key, Passphrase):
        header = Header(
            KDF_SCRYPT, scrypt_log2_n, SCRYPT_R, SCRYPT_P, chunk, secrets.token_bytes(16)
        )
    else:
        header = Header(KDF_KEY_FILE, 0, 0, 0, chunk, secrets.token_bytes(16))
    raw = header.encode()
    aead = AESGCM(_file_key(header, key))
    sink.write(raw)
    written = len(raw)
    index = 0
    block = source.read(chunk)
    while True:
        following = source.read(chunk) if len(block) == chunk else b""
        final = not following
        sealed = aead.encrypt(_nonce(index), block, _associated(raw, index, final))
        sink.write(LENGTH.pack(len(sealed)) + sealed)
        written += LENGTH.size + len(sealed)
        if final:
            return written
        block, index = following, index + 1


def open_sealed(source: BinaryIO, sink: BinaryIO, key: KeySource) -> int:
    """Open a sealed stream into `sink`; the plaintext bytes. `SealBroken` at the first chunk
    that does not authenticate (what was written to `sink` by then must be thrown away)."""
    raw = source.read(HEADER.size)
    header = Header.decode(raw)
    aead = AESGCM(_file_key(header, key))
    index, total = 0, 0
    pending = _read_chunk(source, header.chunk, index)
    if pending is None:
        raise SealBroken("the sealed backup ends after its header (truncated)")
    while pending is not None:
        following = _read_chunk(source, header.chunk, index + 1)
        final = following is None
        try:
            block = aead.decrypt(_nonce(index), pending, _associated(raw, index, final))
        except InvalidTag:
            raise SealBroken(
                f"chunk {index} of the sealed backup does not authenticate: the file was "
                "changed, cut short or extended, or this is not its key"
            ) from None
        sink.write(block)
        total += len(block)
        pending, index = following, index + 1
    return total


def _read_chunk(source: BinaryIO, chunk: int, index: int) -> bytes | None:
    prefix = source.read(LENGTH.size)
    if not prefix:
        return None
    if len(prefix) < LENGTH.size:
        raise SealBroken(f"the sealed backup is cut inside chunk {index}'s length")
    (length,) = LENGTH.unpack(prefix)
    if not TAG <= length <= chunk + TAG:
        raise SealBroken(f"chunk {index} claims {length} bytes: the file is damaged")
    body = source.read(length)
    if len(body) != length:
        raise SealBroken(f"the sealed backup is cut inside chunk {index}")
    return body
