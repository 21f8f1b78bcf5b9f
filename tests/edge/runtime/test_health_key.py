"""The commands that only verify the ledger need the node's public key alone (node.pub, beside
node.key): `voltbook-edge health`, which the updater runs as root with no key passphrase after
every switch, passes on a box whose node key is encrypted at rest — and after a rotation, with
no private key at all; a node.pub that is not a key, or not this node's, is a clear failure;
a box provisioned before node.pub existed still verifies (from the private key) and gets one
at its next start."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from edge.cli import main as edge_cli
from edge.cli_health import health
from edge.runtime.boot import boot
from edge.site import SiteConfigError, load_site
from ledger import key_files
from ledger.chain import NodeKey, key_id, public_key_pem
from tests.edge.sync.operations_kit import MORNING, Node, write_site

SECRET = "correct horse battery staple"
HOUR = dt.timedelta(hours=1)


pytestmark = pytest.mark.usefixtures("no_key_passphrase")


@pytest.fixture
def site_toml(tmp_path: Path) -> Path:
    return write_site(tmp_path / "site", meters=2)


def _run(site_toml: Path, start: dt.datetime, count: int = 1) -> None:
    node = Node.boot(site_toml, start)
    try:
        node.cycles(count)
    finally:
        node.close()


def _encrypted(site_toml: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Encrypt the node key (with the passphrase set, as the runtime's unit has it); the key."""
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, SECRET)
    assert edge_cli(["keys", "encrypt", "--config", str(site_toml)]) == 0
    key = load_site(site_toml).settings.node_key
    assert key_files.is_encrypted(key.read_bytes())
    return key


def _healthy(site_toml: Path, since: dt.datetime) -> dict[str, dict[str, object]]:
    checks = health(site_toml, since)
    assert all(check["ok"] for check in checks.values()), checks
    return checks


def test_health_passes_on_an_encrypted_key_with_no_passphrase(
    site_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _encrypted(site_toml, monkeypatch)
    _run(site_toml, MORNING)  # the runtime, which has the passphrase, runs a cycle
    monkeypatch.delenv(key_files.PASSPHRASE_ENV)  # the updater's unit: no passphrase at all
    _healthy(site_toml, MORNING - HOUR)
    config = ["--config", str(site_toml)]
    assert edge_cli(["ledger", "verify", *config]) == 0
    assert edge_cli(["status", "--json", *config]) == 0


def test_after_keys_rotate_health_passes_without_the_private_key(
    site_toml: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _encrypted(site_toml, monkeypatch)
    _run(site_toml, MORNING, 2)
    before = key.with_suffix(".pub").read_bytes()
    assert edge_cli(["keys", "rotate", "--config", str(site_toml)]) == 0
    after = key.with_suffix(".pub").read_bytes()
    assert after != before  # node.pub follows the key the box signs with now
    _run(site_toml, MORNING + HOUR, 2)  # signs with the new key
    monkeypatch.delenv(key_files.PASSPHRASE_ENV)
    key.unlink()  # nothing private left to read
    capsys.readouterr()
    _healthy(site_toml, MORNING + HOUR - dt.timedelta(minutes=1))
    assert edge_cli(["ledger", "verify", "--config", str(site_toml)]) == 0
    verdict = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert verdict["ok"] is True


def test_a_rotation_cut_short_before_node_pub_still_verifies_and_boot_rewrites_it(
    site_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys rotate` cut short after node.key was switched, before node.pub: node.pub names
    the retired key, which is on the line of keys the store records."""
    key = load_site(site_toml).settings.node_key
    _run(site_toml, MORNING, 2)
    retired = key.with_suffix(".pub").read_bytes()
    assert edge_cli(["keys", "rotate", "--config", str(site_toml)]) == 0
    key.with_suffix(".pub").write_bytes(retired)
    _run(site_toml, MORNING + HOUR, 2)
    current = public_key_pem(key_files.load_node_key(key, None, encrypt_hint="").public_key)
    assert key.with_suffix(".pub").read_bytes() == current  # the runtime wrote it again
    key.with_suffix(".pub").write_bytes(retired)
    _healthy(site_toml, MORNING + HOUR - dt.timedelta(minutes=1))


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00\xff" * 40,
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"ab" * 33,
        b"x" * 100_000,
    ],
)
def test_a_garbage_node_pub_is_a_clear_failure_and_the_runtime_replaces_it(
    site_toml: Path, garbage: bytes
) -> None:
    _run(site_toml, MORNING)
    public = load_site(site_toml).settings.node_key.with_suffix(".pub")
    public.write_bytes(garbage)
    checks = health(site_toml, MORNING - HOUR)
    assert checks["store"]["ok"] is False
    assert str(public) in str(checks["store"]["why"])
    assert "public key file" in str(checks["store"]["why"])
    assert checks["buses"] == {"ok": False, "why": "no store"}
    assert edge_cli(["ledger", "verify", "--config", str(site_toml)]) == 2  # it cannot tell
    _run(site_toml, MORNING + HOUR)  # the runtime has the private key: it writes node.pub again
    _healthy(site_toml, MORNING)


def test_a_node_pub_of_another_key_fails_health_naming_the_signature(
    site_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(site_toml, MORNING, 2)
    public = load_site(site_toml).settings.node_key.with_suffix(".pub")
    stranger = NodeKey.generate().public_key
    public.write_bytes(public_key_pem(stranger))
    checks = health(site_toml, MORNING - HOUR)
    assert checks["store"]["ok"] is False
    why = str(checks["store"]["why"])
    assert "signed by unknown key" in why  # the signature problem, named
    assert f"checked with the key in {public}, {key_id(stranger)}" in why  # and which key
    assert checks["buses"] == checks["sync"] == {"ok": False, "why": "no store"}
    assert edge_cli(["ledger", "verify", "--config", str(site_toml)]) == 1
    err = capsys.readouterr().err
    assert "NOT sound" in err and str(public) in err


def test_an_old_box_without_node_pub_verifies_from_the_private_key_and_gets_one(
    site_toml: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _run(site_toml, MORNING)
    key = load_site(site_toml).settings.node_key
    key.with_suffix(".pub").unlink()  # provisioned before node.pub existed
    with caplog.at_level(logging.WARNING, logger="edge.runtime"):
        _healthy(site_toml, MORNING - HOUR)
    assert any("node.pub does not exist yet" in r.getMessage() for r in caplog.records)
    _run(site_toml, MORNING + HOUR)
    assert key.with_suffix(".pub").stat().st_mode & 0o777 == 0o644
    key.unlink()  # from now on the public file is enough
    _healthy(site_toml, MORNING)


def test_a_box_without_a_node_key_is_told_to_provision_with_voltbook_edge(
    site_toml: Path,
) -> None:
    load_site(site_toml).settings.node_key.unlink()
    with pytest.raises(SiteConfigError, match="`voltbook-edge provision`") as refused:
        boot(load_site(site_toml))
    assert "voltbook-fw" not in str(refused.value)
