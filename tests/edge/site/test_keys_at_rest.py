"""A concentrator's private keys at rest: provision writes them encrypted when a key passphrase
is configured, `voltbook-edge keys encrypt` converts plain ones in place, and the runtime opens
them with the passphrase — refusing, before anything starts, a key it cannot open."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cloud.services.pki import create_ca, issue_client_cert
from edge.cli import main as edge_cli
from edge.cli_provision import identity_of
from edge.runtime.boot import read_node_key
from edge.site.errors import SiteConfigError
from edge.site.model import TlsFiles
from edge.site.node_pub import read_public
from edge.site.site_file import parse_cloud
from edge.sync.client import tls_context
from ledger import key_files
from ledger.chain import NodeKey, key_id
from tests.edge.site.test_identity import answer_for

SECRET = "correct horse battery staple"
NODE = "edge-0001"


pytestmark = pytest.mark.usefixtures("no_key_passphrase")


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A provisioned box's folder, its keys plain (as before key passphrases existed)."""
    ca = create_ca(tmp_path / "pki")
    tls = issue_client_cert(ca, tmp_path / "box" / "tls", NODE)
    (tmp_path / "box" / "tls" / "ca.crt").write_bytes(ca.cert.read_bytes())
    (tmp_path / "box" / "node.key").write_bytes(NodeKey.generate().private_pem())
    hex_key = NodeKey.generate().public_key.public_bytes_raw().hex()
    (tmp_path / "box" / "site.toml").write_text(
        f'[site]\nnode = "{NODE}"\n\n[cloud]\nhost = "127.0.0.1"\nca = "tls/ca.crt"\n'
        f'cert = "tls/{tls.cert.name}"\nkey = "tls/{tls.key.name}"\n'
        f'cloud_public_key = "{hex_key}"\n'
    )
    return tmp_path / "box"


def _cloud_settings(box: Path) -> object:
    site = box / "site.toml"
    return parse_cloud(site, tomllib.loads(site.read_text()))


def test_keys_encrypt_converts_both_keys_and_the_runtime_needs_the_passphrase(
    box: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    node_key, tls_key = box / "node.key", box / "tls" / f"{NODE}.key"
    key_id_before = read_node_key(node_key).key_id
    assert edge_cli(["keys", "encrypt", "--config", str(box / "site.toml")]) == 2
    assert key_files.PASSPHRASE_ENV in capsys.readouterr().err  # says what to set
    assert not key_files.is_encrypted(node_key.read_bytes())

    assert read_public(node_key) is None  # a box provisioned before node.pub existed
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, SECRET)
    assert edge_cli(["keys", "encrypt", "--config", str(box / "site.toml")]) == 0
    assert key_files.is_encrypted(node_key.read_bytes())
    public = read_public(node_key)  # written beside it: what only verifies needs no passphrase
    assert public is not None and key_id(public) == key_id_before
    assert key_files.is_encrypted(tls_key.read_bytes())
    assert read_node_key(node_key).key_id == key_id_before
    assert _cloud_settings(box) is not None  # the TLS key opens
    files = TlsFiles(box / "tls" / "ca.crt", box / "tls" / f"{NODE}.crt", tls_key)
    assert tls_context(files).verify_mode.name == "CERT_REQUIRED"

    monkeypatch.setenv(key_files.PASSPHRASE_ENV, "not the passphrase")
    with pytest.raises(SiteConfigError, match="passphrase is wrong"):
        read_node_key(node_key)
    with pytest.raises(SiteConfigError, match="TLS key this box can open"):
        _cloud_settings(box)
    monkeypatch.delenv(key_files.PASSPHRASE_ENV)
    with pytest.raises(SiteConfigError, match=key_files.PASSPHRASE_ENV):
        read_node_key(node_key)
    with pytest.raises(SiteConfigError, match=key_files.PASSPHRASE_ENV):
        _cloud_settings(box)
    with pytest.raises(key_files.KeyFileError):  # never an OpenSSL prompt on a terminal
        tls_context(files)


def test_plain_keys_still_work_without_a_passphrase(box: Path) -> None:
    assert read_node_key(box / "node.key").key_id
    assert _cloud_settings(box) is not None


def test_the_passphrase_can_come_from_a_systemd_credential(
    box: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / key_files.CREDENTIAL).write_text(SECRET + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert edge_cli(["keys", "encrypt", "--config", str(box / "site.toml")]) == 0
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, SECRET)  # the same passphrase, another source
    assert read_node_key(box / "node.key").key_id


def test_provision_writes_the_keys_encrypted_with_the_passphrase(tmp_path: Path) -> None:
    node_key, tls_key = NodeKey.generate(), ec.generate_private_key(ec.SECP256R1())
    made = identity_of(answer_for(tmp_path, tls_key.public_key()), node_key, tls_key,
                       SECRET.encode())  # fmt: skip
    for pem in (made.node_key_pem, made.tls_key_pem):
        assert key_files.is_encrypted(pem)
    (tmp_path / "node.key").write_bytes(made.node_key_pem)
    opened = key_files.load_node_key(tmp_path / "node.key", SECRET.encode(), encrypt_hint="")
    assert opened.key_id == node_key.key_id
    plain = identity_of(answer_for(tmp_path / "p", tls_key.public_key()), node_key, tls_key)
    assert not key_files.is_encrypted(plain.node_key_pem)  # no passphrase: as before
