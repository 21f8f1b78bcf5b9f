"""`ledger.key_files`: where the passphrase comes from, keys written encrypted and read back,
a wrong or missing passphrase refused with what to set, an unencrypted key still read (with a
warning), and in-place encryption that leaves the old file or the new one."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import key_files
from ledger.chain import NodeKey

SECRET = b"correct horse battery staple"


def test_the_passphrase_comes_from_the_credential_then_the_file_then_the_environment(
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / key_files.CREDENTIAL).write_bytes(b"from systemd\n")
    (tmp_path / "file").write_bytes(b"from a file\r\n")
    every = {"CREDENTIALS_DIRECTORY": str(credentials),
             key_files.PASSPHRASE_FILE_ENV: str(tmp_path / "file"),
             key_files.PASSPHRASE_ENV: "from the environment"}  # fmt: skip
    assert key_files.passphrase(every) == b"from systemd"
    del every["CREDENTIALS_DIRECTORY"]
    assert key_files.passphrase(every) == b"from a file"
    del every[key_files.PASSPHRASE_FILE_ENV]
    assert key_files.passphrase(every) == b"from the environment"
    assert key_files.passphrase({}) is None
    # a credentials directory of another service, without ours, is not a passphrase
    assert key_files.passphrase({"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


@pytest.mark.parametrize(
    "environ",
    [{key_files.PASSPHRASE_ENV: ""}, {key_files.PASSPHRASE_ENV: "   "},
     {key_files.PASSPHRASE_FILE_ENV: "/nonexistent/passphrase"}],
)  # fmt: skip
def test_an_empty_or_unreadable_passphrase_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(key_files.KeyFileError):
        key_files.passphrase(environ)


def test_a_node_key_written_encrypted_reads_back_only_with_its_passphrase(tmp_path: Path) -> None:
    key = NodeKey.generate()
    path = tmp_path / "node.key"
    key_files.write_private_key(path, key.private_pem(SECRET))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert key_files.is_encrypted(pem) and b"ENCRYPTED PRIVATE KEY" in pem
    assert key.private_key.private_bytes_raw().hex() not in pem.decode()
    loaded = key_files.load_node_key(path, SECRET, encrypt_hint="x")
    assert loaded.key_id == key.key_id
    with pytest.raises(key_files.KeyFileError, match=key_files.PASSPHRASE_ENV):
        key_files.load_node_key(path, None, encrypt_hint="x")
    with pytest.raises(key_files.KeyFileError, match="passphrase is wrong"):
        key_files.load_node_key(path, b"not it", encrypt_hint="x")


def test_an_unencrypted_key_still_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = NodeKey.generate()
    path = tmp_path / "node.key"
    path.write_bytes(key.private_pem())
    with caplog.at_level(logging.WARNING, logger="ledger.key_files"):
        loaded = key_files.load_node_key(path, SECRET, encrypt_hint="voltbook-edge keys encrypt")
    assert loaded.key_id == key.key_id
    assert "unencrypted" in caplog.text and "voltbook-edge keys encrypt" in caplog.text


def test_garbage_or_another_kind_of_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    with pytest.raises(key_files.KeyFileError, match="PEM private key"):
        key_files.load_node_key(path, None, encrypt_hint="x")
    path.write_bytes(key_files.private_pem(ec.generate_private_key(ec.SECP256R1()), None))
    with pytest.raises(key_files.KeyFileError, match="not an Ed25519"):
        key_files.load_node_key(path, None, encrypt_hint="x")


def test_encrypt_in_place_rewrites_a_plain_key_once(tmp_path: Path) -> None:
    tls_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "edge-0001.key"
    path.write_bytes(key_files.private_pem(tls_key, None))
    path.chmod(0o644)  # whatever it was, the encrypted one is 0600
    assert key_files.encrypt_in_place(path, SECRET)
    assert key_files.is_encrypted(path.read_bytes())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge-0001.key"]  # no temporary left
    again = key_files.load_private_key(path, SECRET, encrypt_hint="x")
    assert isinstance(again, ec.EllipticCurvePrivateKey)
    assert again.private_numbers() == tls_key.private_numbers()
    before = path.read_bytes()
    assert not key_files.encrypt_in_place(path, SECRET)  # already: left alone
    assert path.read_bytes() == before
    with pytest.raises(key_files.KeyFileError, match="passphrase is wrong"):
        key_files.encrypt_in_place(path, b"another passphrase")
