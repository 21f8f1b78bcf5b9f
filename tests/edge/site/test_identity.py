"""`edge.site.identity` and `edge.cli_provision`'s pure parts: site.toml edited as text (comments,
buses and [cloud] tuning kept), keys written 0600, an identity never overwritten without
--force, what is sent holds no private key, and an answer for another key is refused."""

from __future__ import annotations

import contextlib
import json
import stat
import tempfile
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.services.pki import create_ca, sign_client_key
from edge.cli_provision import ProvisionError, identity_of, request_body
from edge.site.identity import Identity, IdentityExists, check_free, install, site_text
from edge.site.node_pub import read_public
from ledger.chain import NodeKey, public_key_pem
from ledger.key_files import load_node_key

NODE = "east-gate-market-1"
EXISTING = """\
# The market's concentrator.
[site]
node = "edge-0001"              # set at the factory
name = "East Gate"
node_key = "keys/node.key"

[cloud]
host = "old.example"
batch_bytes = 16384             # a slow GPRS link

[[buses]]
name = "rs485-1"
kind = "serial"
protocol = "dlt645"
port = "/dev/ttyUSB0"
"""


def identity(node: str = NODE) -> Identity:
    node_key = NodeKey.generate()
    return Identity(
        node=node,
        certificate="-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n",
        ca="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
        broker_host="mqtt.example.cn",
        broker_port=8883,
        cloud_public_key_pem=public_key_pem(NodeKey.generate().public_key),
        node_key_pem=node_key.private_pem(),
        node_public_key_pem=public_key_pem(node_key.public_key),
        tls_key_pem=b"-----BEGIN PRIVATE KEY-----\nTLS\n-----END PRIVATE KEY-----\n",
    )


def test_an_existing_site_toml_gets_the_node_and_cloud_and_keeps_the_rest() -> None:
    text = site_text(EXISTING, identity())
    data = tomllib.loads(text)
    assert data["site"]["node"] == NODE and data["site"]["name"] == "East Gate"
    assert data["cloud"] == {
        "host": "mqtt.example.cn",
        "port": 8883,
        "ca": "tls/ca.crt",
        "cert": f"tls/{NODE}.crt",
        "key": f"tls/{NODE}.key",
        "cloud_public_key": "cloud.pub",
        "batch_bytes": 16384,
    }
    assert data["buses"][0]["port"] == "/dev/ttyUSB0"
    assert "# The market's concentrator." in text and "# a slow GPRS link" in text
    assert site_text(text, identity()) == text  # provisioning the same again changes nothing


def test_a_site_toml_without_a_node_or_a_site_table_gets_them() -> None:
    no_node = EXISTING.replace('node = "edge-0001"              # set at the factory\n', "")
    assert tomllib.loads(site_text(no_node, identity()))["site"]["node"] == NODE
    no_site = "[[buses]]\nname = 'a'\n"
    data = tomllib.loads(site_text(no_site, identity()))
    assert data["site"]["node"] == NODE and data["buses"] == [{"name": "a"}]
    starter = tomllib.loads(site_text(None, identity()))
    assert starter["site"] == {"node": NODE} and starter["cloud"]["port"] == 8883


def test_a_starter_names_the_units_data_folder_when_asked() -> None:
    # The systemd units keep the store and the updater's offers in /var/lib/voltbook: a starter
    # written into /etc/voltbook must point the store there, not at /etc/voltbook/data.
    starter = tomllib.loads(site_text(None, identity(), Path("/var/lib/voltbook")))
    assert starter["site"] == {"node": NODE, "data_dir": "/var/lib/voltbook"}
    existing = tomllib.loads(site_text(EXISTING, identity(), Path("/var/lib/voltbook")))
    assert existing["site"].get("data_dir") == tomllib.loads(EXISTING)["site"].get("data_dir")


def test_install_writes_every_file_with_keys_0600(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(EXISTING)
    made = identity()
    install(tmp_path, made)
    for secret in (tmp_path / "keys/node.key", tmp_path / f"tls/{NODE}.key"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert (tmp_path / "keys/node.key").read_bytes() == made.node_key_pem
    # beside it, its public half, readable by all: what the commands that only verify read
    assert stat.S_IMODE((tmp_path / "keys/node.pub").stat().st_mode) == 0o644
    node_key = load_node_key(tmp_path / "keys/node.key", None, encrypt_hint="")
    assert read_public(tmp_path / "keys/node.key") == node_key.public_key
    assert (tmp_path / f"tls/{NODE}.crt").read_text() == made.certificate
    assert (tmp_path / "tls/ca.crt").read_text() == made.ca
    assert (tmp_path / "cloud.pub").read_bytes() == made.cloud_public_key_pem
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".provision")] == []
    assert tomllib.loads((tmp_path / "site.toml").read_text())["site"]["node"] == NODE


def test_an_identity_is_not_overwritten_without_force(tmp_path: Path) -> None:
    check_free(tmp_path, force=False)  # an empty directory
    (tmp_path / "site.toml").write_text(EXISTING)
    with pytest.raises(IdentityExists, match="--force"):
        check_free(tmp_path, force=False)
    check_free(tmp_path, force=True)
    (tmp_path / "site.toml").write_text(EXISTING.replace("[cloud]", "[other]"))
    check_free(tmp_path, force=False)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/node.key").write_bytes(b"key")
    with pytest.raises(IdentityExists, match="node key"):
        check_free(tmp_path, force=False)
    (tmp_path / "keys/node.key").unlink()
    (tmp_path / "data").mkdir()
    check_free(tmp_path, force=False)  # an empty store directory is no identity
    (tmp_path / "data/store.sqlite").write_bytes(b"ledger")
    with pytest.raises(IdentityExists, match="a store in"):
        check_free(tmp_path, force=False)


def test_what_is_sent_holds_no_private_key() -> None:
    node_key = NodeKey.generate()
    tls_key = ec.generate_private_key(ec.SECP256R1())
    sent = json.dumps(request_body("TOKEN", node_key, tls_key, "East Gate Market"))
    assert "PRIVATE" not in sent
    raw_node = node_key.private_key.private_bytes_raw()
    assert raw_node.hex() not in sent.lower() and raw_node.hex().upper() not in sent
    secret = format(tls_key.private_numbers().private_value, "x")
    assert secret not in sent.lower()
    body = json.loads(sent)
    assert set(body) == {"token", "node_public_key", "csr", "site"}
    csr = x509.load_pem_x509_csr(body["csr"].encode())
    assert csr.is_signature_valid and csr.public_key() == tls_key.public_key()


def answer_for(tmp_path: Path, public_key: ec.EllipticCurvePublicKey, node: str = NODE) -> dict:
    ca = create_ca(tmp_path / "pki")
    certificate = sign_client_key(ca, node, public_key)
    return {
        "node": NODE,
        "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "ca": ca.cert.read_text(),
        "broker": {"host": "mqtt.example.cn", "port": 8883},
        "cloud_public_key": NodeKey.generate().public_key.public_bytes_raw().hex(),
        "config": None,
    }


def test_an_answer_is_taken_only_for_this_boxs_key_and_node(tmp_path: Path) -> None:
    node_key, tls_key = NodeKey.generate(), ec.generate_private_key(ec.SECP256R1())
    good = answer_for(tmp_path, tls_key.public_key())
    made = identity_of(good, node_key, tls_key)
    certificate = x509.load_pem_x509_certificate(made.certificate.encode())
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NODE
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    for bad in (
        answer_for(tmp_path / "a", other_key),  # a certificate of somebody else's key
        answer_for(tmp_path / "b", tls_key.public_key(), node="edge-9"),  # another CN
        {**good, "broker": {"host": "mqtt\n[site]", "port": 8883}},
        {**good, "broker": {"host": "mqtt", "port": 0}},
        {**good, "node": "../etc"},
        {**good, "cloud_public_key": "zz"},
        {**good, "ca": answer_for(tmp_path / "c", tls_key.public_key())["ca"]},  # not its issuer
    ):
        with pytest.raises(ProvisionError, match="voltbook-fw claim"):
            identity_of(bad, node_key, tls_key)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ("node", "certificate", "ca", "broker", "cloud_public_key", "config")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON), st.booleans())
def test_any_answer_is_an_identity_or_a_provision_error(
    changes: dict[str, object], keep_good: bool
) -> None:
    base = _GOOD_FOR_BOX if keep_good else {}
    with contextlib.suppress(ProvisionError):
        identity_of({**base, **changes}, *_BOX)


def good_answer(tls_key: ec.EllipticCurvePrivateKey) -> dict[str, object]:
    """A well-formed answer for `tls_key` (a CA made once per run)."""
    return {
        **_GOOD,
        "certificate": sign_client_key(_CA, NODE, tls_key.public_key())
        .public_bytes(serialization.Encoding.PEM)
        .decode(),
    }


_CA_DIR = tempfile.TemporaryDirectory(prefix="vb-identity-ca-")  # removed when the run ends
_CA = create_ca(Path(_CA_DIR.name))
_GOOD: dict[str, object] = {
    "node": NODE,
    "ca": _CA.cert.read_text(),
    "broker": {"host": "mqtt.example.cn", "port": 8883},
    "cloud_public_key": NodeKey.generate().public_key.public_bytes_raw().hex(),
    "config": None,
}
_BOX = (NodeKey.generate(), ec.generate_private_key(ec.SECP256R1()))
_GOOD_FOR_BOX = good_answer(_BOX[1])
