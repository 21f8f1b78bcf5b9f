"""The sealed file format (`cloud.backups.sealed`) and the backup key (`cloud.backups.keys`):
a round trip at every size around the chunk boundary, and every way of changing a sealed file —
a flipped byte anywhere, a chunk dropped, swapped or repeated, a cut at a chunk boundary, bytes
appended, the wrong key or kind of key — refused with our error, never anything else."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.backups import KeyRefused, SealBroken
from cloud.backups.keys import KeyFile, Passphrase, key_source, read_key_file, write_key_file
from cloud.backups.sealed import HEADER, LENGTH, open_sealed, seal

CHUNK = 4096
KEY = KeyFile(bytes(range(32)))
PLAIN = os.urandom(3 * CHUNK + 123)


def sealed(data: bytes, key: KeyFile | Passphrase = KEY) -> bytes:
    out = io.BytesIO()
    seal(io.BytesIO(data), out, key, chunk=CHUNK, scrypt_log2_n=14)  # the cheapest allowed
    return out.getvalue()


def opened(blob: bytes, key: KeyFile | Passphrase = KEY) -> bytes:
    out = io.BytesIO()
    open_sealed(io.BytesIO(blob), out, key)
    return out.getvalue()


def chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The header and each chunk with its length prefix."""
    header, rest, out = blob[: HEADER.size], blob[HEADER.size :], []
    while rest:
        (length,) = LENGTH.unpack(rest[: LENGTH.size])
        out.append(rest[: LENGTH.size + length])
        rest = rest[LENGTH.size + length :]
    return header, out


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 123])
def test_round_trip(size: int) -> None:
    data = PLAIN[:size]
    assert opened(sealed(data)) == data


def test_the_same_data_seals_differently_each_time() -> None:
    assert sealed(PLAIN) != sealed(PLAIN)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    blob = bytearray(sealed(PLAIN))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SealBroken):
        opened(bytes(blob))


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_refused_with_our_error(junk: bytes) -> None:
    with pytest.raises(SealBroken):
        opened(junk)


def test_chunks_dropped_swapped_repeated_or_cut_are_refused() -> None:
    header, parts = chunks(sealed(PLAIN))
    assert len(parts) == 4
    changed = {
        "cut at a chunk boundary": header + b"".join(parts[:3]),
        "a middle chunk dropped": header + parts[0] + parts[2] + parts[3],
        "two chunks swapped": header + parts[1] + parts[0] + parts[2] + parts[3],
        "a chunk repeated": header + parts[0] + parts[0] + b"".join(parts[1:]),
        "the last chunk repeated": header + b"".join(parts) + parts[3],
        "bytes appended": header + b"".join(parts) + b"\x00",
        "only the header": header,
        "cut inside a chunk": header + b"".join(parts)[:-5],
    }
    for what, blob in changed.items():
        with pytest.raises(SealBroken):
            opened(blob)
        assert what


def test_a_header_from_another_file_is_refused() -> None:
    first, second = sealed(PLAIN), sealed(PLAIN)
    with pytest.raises(SealBroken):
        opened(second[: HEADER.size] + first[HEADER.size :])


def test_the_wrong_key_or_kind_of_key_is_refused() -> None:
    blob = sealed(PLAIN)
    with pytest.raises(SealBroken, match="does not authenticate"):
        opened(blob, KeyFile(bytes(32)))
    with pytest.raises(SealBroken, match="key file, not a passphrase"):
        opened(blob, Passphrase("a long enough passphrase"))


def test_a_passphrase_round_trip_and_a_wrong_passphrase() -> None:
    blob = sealed(PLAIN[:5000], Passphrase("correct horse battery staple"))
    assert opened(blob, Passphrase("correct horse battery staple")) == PLAIN[:5000]
    with pytest.raises(SealBroken):
        opened(blob, Passphrase("correct horse battery stapler"))


def test_a_forged_header_cannot_ask_for_costly_scrypt() -> None:
    blob = bytearray(sealed(b"x", Passphrase("correct horse battery staple")))
    blob[10] = 30  # 2**30 rounds of scrypt: a denial of service if believed
    with pytest.raises(SealBroken, match="out of bounds"):
        opened(bytes(blob), Passphrase("correct horse battery staple"))
    blob = bytearray(sealed(b"x"))
    struct.pack_into(">I", blob, 14, 1 << 30)  # a gigabyte per chunk
    with pytest.raises(SealBroken, match="out of bounds"):
        opened(bytes(blob))


def test_key_files(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "backup.key"
    path.parent.mkdir()
    write_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(read_key_file(path).secret) == 32
    with pytest.raises(KeyRefused, match="never overwritten"):
        write_key_file(path)
    bad = tmp_path / "bad.key"
    bad.write_text("00" * 31)
    with pytest.raises(KeyRefused, match="64 hex digits"):
        read_key_file(bad)
    with pytest.raises(KeyRefused, match="does not exist"):
        read_key_file(tmp_path / "missing.key")


def test_where_the_key_comes_from(tmp_path: Path) -> None:
    repository = tmp_path / "backups"
    inside = repository / "keys" / "backup.key"
    inside.parent.mkdir(parents=True)
    write_key_file(inside)
    with pytest.raises(KeyRefused, match="inside the backup repository"):
        key_source(repository, inside, "VB_PASS", {})
    with pytest.raises(KeyRefused, match="no backup key"):
        key_source(repository, None, "VB_PASS", {})
    with pytest.raises(KeyRefused, match="shorter than"):
        key_source(repository, None, "VB_PASS", {"VB_PASS": "short"})
    source = key_source(repository, None, "VB_PASS", {"VB_PASS": "a long enough passphrase"})
    assert source == Passphrase("a long enough passphrase")
