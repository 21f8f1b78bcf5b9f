"""The cloud's keys at rest and their rotation: the command key and the CA key encrypted with the
passphrase (`voltbook-cloud keys encrypt`), the command key rotated with old and new accepted by
a box in between and the old refused after, and the broker CA rotated with certificates of
both CAs accepted by a real Mosquitto in between and the old refused after."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from cloud import keys
from cloud.chains import command_keys, commands
from cloud.cli import main as cloud_cli
from cloud.config import load_config
from cloud.db import models
from cloud.db.auth import OperatorLogEntry
from cloud.db.engine import make_engine, session_factory, upgrade
from cloud.errors import Invalid
from cloud.ingest import concentrators
from cloud.people.oplog_heads import check
from cloud.services import ca_rotation
from cloud.services.broker import CLOUD_ACL, MosquittoBroker, find_mosquitto
from cloud.services.errors import ServiceError
from cloud.services.pki import TlsFiles, issue_client_cert, issue_server_cert, load_or_create_ca
from edge.runtime.boot import boot
from edge.runtime.clock import ManualClock
from edge.site import load_site
from edge.site.model import TlsFiles as EdgeTlsFiles
from edge.site.site_file import parse_cloud
from edge.sync.client import tls_context
from edge.sync.commands import CommandDesk, Handled
from ledger import key_files
from ledger.signed import Command, CommandKind, OplogHead, Rejected, open_command, trusted
from tests.conftest import service_missing
from tests.edge.sync.operations_kit import MORNING, write_site
from tests.edge.sync.takeover_kit import documents_of

SECRET = "correct horse battery staple"
NODE = "edge-0001"
NOW = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (key_files.PASSPHRASE_ENV, key_files.PASSPHRASE_FILE_ENV, "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


def _with_passphrase(monkeypatch: pytest.MonkeyPatch, secret: str = SECRET) -> None:
    monkeypatch.setenv(key_files.PASSPHRASE_ENV, secret)


# -- keys at rest -------------------------------------------------------------------------------


def test_the_cloud_key_is_made_encrypted_and_needs_its_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_passphrase: None
) -> None:
    _with_passphrase(monkeypatch)
    path = tmp_path / "cloud-key.pem"
    made = keys.load_or_create(path)
    assert key_files.is_encrypted(path.read_bytes())
    assert keys.load(path).key_id == made.key_id
    monkeypatch.delenv(key_files.PASSPHRASE_ENV)
    with pytest.raises(Invalid, match=key_files.PASSPHRASE_ENV):
        keys.load(path)
    _with_passphrase(monkeypatch, "another one")
    with pytest.raises(Invalid, match="passphrase is wrong"):
        keys.load(path)


def test_keys_encrypt_converts_the_cloud_key_and_the_ca_key_in_place(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_passphrase: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cloud_cli(["init", "--dir", str(tmp_path)]) == 0
    config = tmp_path / "cloud.toml"
    ca = load_or_create_ca(tmp_path / "pki")  # as `serve` makes it, before any passphrase
    key_id = keys.load(tmp_path / "cloud-key.pem").key_id
    assert not key_files.is_encrypted(ca.key.read_bytes())
    assert cloud_cli(["keys", "encrypt", "--config", str(config)]) == 2  # no passphrase yet
    assert key_files.PASSPHRASE_ENV in capsys.readouterr().err
    assert not key_files.is_encrypted((tmp_path / "cloud-key.pem").read_bytes())  # unchanged

    _with_passphrase(monkeypatch)
    assert cloud_cli(["keys", "encrypt", "--config", str(config)]) == 0
    for path in (tmp_path / "cloud-key.pem", ca.key):
        assert key_files.is_encrypted(path.read_bytes()), path
    assert keys.load(tmp_path / "cloud-key.pem").key_id == key_id
    issued = issue_client_cert(ca, tmp_path / "out", NODE)  # the CA key opens and signs
    assert issued.cert.is_file()
    assert cloud_cli(["keys", "encrypt", "--config", str(config)]) == 0  # again: nothing to do
    assert "already encrypted" in capsys.readouterr().out

    monkeypatch.delenv(key_files.PASSPHRASE_ENV)
    with pytest.raises(key_files.KeyFileError, match=key_files.PASSPHRASE_ENV):
        issue_client_cert(ca, tmp_path / "out2", NODE)


# -- the command key ----------------------------------------------------------------------------


def _command(seq: int) -> Command:
    return Command(id=uuid.uuid4().hex, seq=seq, target=NODE, kind=CommandKind.RECHARGE,
                   issued=NOW, expires=NOW + dt.timedelta(days=1),
                   args={"account": "A0001", "fen": 100, "payment": f"P-{seq}"})  # fmt: skip


def _box_trusts(tmp_path: Path, *public_hex: str) -> dict:
    """The cloud keys a box trusts with `cloud_public_key = [...]` in its site.toml."""
    data = {"cloud": {"host": "127.0.0.1", "cloud_public_key": list(public_hex)}}
    settings = parse_cloud(tmp_path / "site.toml", data)
    assert settings is not None
    return dict(settings.cloud_keys)


def _hex(key: keys.NodeKey) -> str:
    return key.public_key.public_bytes_raw().hex()


def test_during_a_command_key_rotation_old_and_new_are_accepted_and_after_only_the_new(
    tmp_path: Path, no_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cloud_cli(["init", "--dir", str(tmp_path)]) == 0
    config, path = tmp_path / "cloud.toml", tmp_path / "cloud-key.pem"
    old = keys.load(path)
    head = OplogHead.sign(1, bytes(32), NOW.isoformat(), old)  # the operator log, signed by old

    assert cloud_cli(["keys", "rotate-command-key", "--config", str(config)]) == 0
    new = keys.load(keys.next_path(path))
    assert new.key_id != old.key_id and _hex(new) in capsys.readouterr().out
    assert keys.load(path).key_id == old.key_id  # staged: the cloud still signs with the old
    during = _box_trusts(tmp_path, _hex(old), _hex(new))
    before_switch = _command(1).sign(keys.load(path))

    assert cloud_cli(["keys", "rotate-command-key", "--switch", "--config", str(config)]) == 0
    assert keys.load(path).key_id == new.key_id  # the cloud signs with the new key now
    assert not keys.next_path(path).exists()
    after_switch = _command(2).sign(keys.load(path))
    for payload in (before_switch, after_switch):
        assert open_command(payload, during, NODE, NOW).target == NODE

    finished = _box_trusts(tmp_path, _hex(new))  # the box drops the old key
    assert open_command(after_switch, finished, NODE, NOW).seq == 2
    with pytest.raises(Rejected) as refused:
        open_command(before_switch, finished, NODE, NOW)
    assert refused.value.reason == "unknown_key"
    # what the old key signed still verifies for the cloud: its public key is retired, not lost
    ring = trusted(keys.load(path).public_key, *keys.retired_keys(path))
    assert check([head], {1: bytes(32)}, 1, ring) == ""
    assert "does not verify" in check([head], {1: bytes(32)}, 1, trusted(new.public_key))


def test_a_switch_without_a_staged_key_changes_nothing(tmp_path: Path, no_passphrase: None) -> None:
    path = tmp_path / "cloud-key.pem"
    current = keys.load_or_create(path)
    with pytest.raises(Invalid, match="no next key staged"):
        keys.switch(path)
    assert keys.load(path).key_id == current.key_id
    assert not keys.retired_path(path).exists()


# -- the broker's CA ----------------------------------------------------------------------------


def _connects(broker: MosquittoBroker, files: TlsFiles) -> bool:
    """Whether the broker accepts a device with `files` (its MQTT CONNACK, or none)."""
    outcome: dict[str, bool] = {}
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=NODE)
    client.tls_set_context(tls_context(EdgeTlsFiles(files.ca, files.cert, files.key)))

    def connected(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        outcome["ok"] = not getattr(reason, "is_failure", True)
        done.set()

    def gone(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        outcome.setdefault("ok", False)
        done.set()

    client.on_connect, client.on_disconnect = connected, gone
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except (ssl.SSLError, OSError):
        return False
    client.loop_start()
    try:
        done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome.get("ok", False)


@pytest.fixture
def mosquitto_dir(tmp_path: Path) -> Iterator[Path]:
    if find_mosquitto() is None:
        service_missing("mosquitto", "not on PATH, /usr/sbin or /usr/local/sbin")
    yield tmp_path


def _broker(workdir: Path, pki: Path) -> MosquittoBroker:
    """The broker as `cloud.server` starts it: its certificate from the current CA, client
    certificates of the trust bundle's CAs."""
    server = issue_server_cert(ca_rotation.current_ca(pki), workdir / "tls", "broker")
    trust = TlsFiles(ca=ca_rotation.trust_bundle(pki), cert=server.cert, key=server.key)
    try:
        return MosquittoBroker(workdir, tls=trust, acl_users=CLOUD_ACL).start()
    except ServiceError as exc:
        service_missing("mosquitto", str(exc))
        raise


def test_during_a_ca_rotation_certificates_of_both_cas_connect_and_after_only_the_new(
    mosquitto_dir: Path, no_passphrase: None
) -> None:
    pki = mosquitto_dir / "pki"
    old_ca = load_or_create_ca(pki)
    old_box = issue_client_cert(old_ca, mosquitto_dir / "old-box", NODE)
    staged = ca_rotation.stage(pki)
    assert ca_rotation.issuing_ca(pki) == staged  # boxes are certified by the new CA now
    new_box = issue_client_cert(ca_rotation.issuing_ca(pki), mosquitto_dir / "new-box", NODE)
    bundle = mosquitto_dir / "new-box" / "ca.crt"  # what a box is handed as its [cloud] ca
    shutil.copyfile(ca_rotation.trust_bundle(pki), bundle)
    new_box = TlsFiles(ca=bundle, cert=new_box.cert, key=new_box.key)
    with _broker(mosquitto_dir / "during", pki) as broker:
        assert _connects(broker, old_box)  # the old CA still valid
        assert _connects(broker, new_box)  # the new CA's certificate accepted meanwhile

    ca_rotation.finish(pki)
    assert ca_rotation.next_ca(pki) is None and not (pki / ca_rotation.BUNDLE).exists()
    assert len(list(pki.glob("ca-retired-*.crt"))) == 1
    with _broker(mosquitto_dir / "after", pki) as broker:
        assert _connects(broker, new_box)
        # the old CA's box: refused (it does not even trust the broker's new certificate; with
        # the new CA to trust, its own certificate is refused by the broker)
        assert not _connects(broker, old_box)
        assert not _connects(broker, TlsFiles(ca=bundle, cert=old_box.cert, key=old_box.key))


def test_a_second_stage_or_a_finish_without_one_is_refused(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    with pytest.raises(ca_rotation.RotationRefused, match="no CA"):
        ca_rotation.stage(pki)
    load_or_create_ca(pki)
    with pytest.raises(ca_rotation.RotationRefused, match="nothing to finish"):
        ca_rotation.finish(pki)
    ca_rotation.stage(pki)
    with pytest.raises(ca_rotation.RotationRefused, match="staged already"):
        ca_rotation.stage(pki)


def test_the_switch_waits_until_every_active_box_applied_a_push_carrying_the_next_key(
    tmp_path: Path, no_passphrase: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cloud_cli(["init", "--dir", str(tmp_path)]) == 0
    config, path = tmp_path / "cloud.toml", tmp_path / "cloud-key.pem"
    old = keys.load(path)
    engine = make_engine(load_config(config).database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    try:
        with sessions.begin() as session:
            for node in ("edge-0001", "edge-0002", "edge-0003"):
                concentrators.register(session, node, keys.NodeKey.generate().public_key, now=NOW)
            retired = session.get(models.Concentrator, "edge-0003")
            assert retired is not None
            retired.status = models.NodeStatus.RETIRED.value  # nobody to wait for

        assert cloud_cli(["keys", "rotate-command-key", "--config", str(config)]) == 0

        def push(node: str, trust: dict) -> None:
            now = dt.datetime.now(dt.UTC)
            args = {"version": 1, "documents": {}, **trust}
            with sessions.begin() as session:
                sent = commands.issue(session, node, CommandKind.CONFIG, args, key=old, now=now)
                commands.record_outcome(session, node, sent.id, models.CommandStatus.APPLIED,
                                        result={}, now=now)  # fmt: skip

        push("edge-0001", _pushed_trust(config, old))  # carries the next key
        push("edge-0002", {"cloud_keys": [_hex(old)], "retired_cloud_keys": []})  # does not
        capsys.readouterr()
        switch = ["keys", "rotate-command-key", "--switch", "--config", str(config)]
        assert cloud_cli(switch) == 2
        refused = capsys.readouterr().err
        assert "edge-0002" in refused and "edge-0001" not in refused
        assert "edge-0003" not in refused
        assert keys.load(path).key_id == old.key_id  # nothing switched
        assert keys.next_path(path).exists()

        assert cloud_cli([*switch, "--force"]) == 0
        assert keys.load(path).key_id != old.key_id
        with sessions() as session:
            logged = session.scalars(
                select(OperatorLogEntry).where(
                    OperatorLogEntry.action == "command_key.switch_forced"
                )
            ).one()
            assert logged.after == {"not_yet_trusting": ["edge-0002"]}
    finally:
        engine.dispose()


# -- the command key, pushed through the signed configuration -----------------------------------


class _Box:
    """A real concentrator (demo site, real store and command desk) whose site.toml trusts
    `configured` only, receiving commands signed by whichever key the cloud signs with."""

    def __init__(self, site_toml: Path, configured: keys.NodeKey) -> None:
        self.clock = ManualClock(MORNING)
        self.booted = boot(load_site(site_toml), clock=self.clock)
        self.desk = CommandDesk(self.booted.runtime, trusted(configured.public_key))
        self.documents = documents_of(self.booted.runtime.site.settings.config_path)
        self.seq = self.version = 0

    def send(self, signer: keys.NodeKey, kind: CommandKind, args: dict) -> Handled:
        self.seq += 1
        now = self.clock.true_now()
        node = self.booted.runtime.store.node
        command = Command(id=uuid.uuid4().hex, seq=self.seq, target=node, kind=kind, issued=now,
                          expires=now + dt.timedelta(days=1), args=args)  # fmt: skip
        return self.desk.handle(command.sign(signer))

    def push(self, signer: keys.NodeKey, trust: dict) -> Handled:
        """The configuration as `site_config.push` sends it: documents and the cloud keys."""
        self.version += 1
        args = {"version": self.version, "documents": self.documents, **trust}
        return self.send(signer, CommandKind.CONFIG, args)

    def time_command(self, signer: keys.NodeKey) -> str:
        return self.send(signer, CommandKind.TIME, {}).outcome


def _pushed_trust(config: Path, signer: keys.NodeKey) -> dict:
    """What the cloud's next configuration push carries (`cloud.chains.command_keys`)."""
    engine = make_engine(load_config(config).database_url)
    try:
        with session_factory(engine).begin() as session:
            return command_keys.config_args(session, signer)
    finally:
        engine.dispose()


def test_the_next_command_key_reaches_the_boxes_with_their_configuration(
    tmp_path: Path, no_passphrase: None
) -> None:
    """No site.toml edit: the box trusts the staged key once it applied the configuration the
    cloud pushed, and after the switch and the next push it no longer needs the old one (its
    site.toml still names only the old key, which is now refused)."""
    assert cloud_cli(["init", "--dir", str(tmp_path / "cloud")]) == 0
    config, path = tmp_path / "cloud" / "cloud.toml", tmp_path / "cloud" / "cloud-key.pem"
    old = keys.load(path)
    site_toml = write_site(tmp_path / "site", 2)
    box = _Box(site_toml, old)
    try:
        assert cloud_cli(["keys", "rotate-command-key", "--config", str(config)]) == 0
        new = keys.load(keys.next_path(path))
        assert box.time_command(new) == "rejected"  # not yet pushed: unknown to the box
        trust = _pushed_trust(config, old)
        assert trust == {"cloud_keys": [_hex(old), _hex(new)], "retired_cloud_keys": []}
        assert box.push(old, trust).outcome == "applied"
        assert box.time_command(new) == box.time_command(old) == "applied"  # both, meanwhile

        assert cloud_cli(["keys", "rotate-command-key", "--switch", "--config", str(config)]) == 0
        signer = keys.load(path)  # the restarted cloud's key
        assert signer.key_id == new.key_id
        trust = _pushed_trust(config, signer)
        assert trust == {"cloud_keys": [_hex(new)], "retired_cloud_keys": [_hex(old)]}
        assert box.push(signer, trust).outcome == "applied"
        assert box.time_command(new) == "applied"
        assert box.time_command(old) == "rejected"  # retired, though site.toml names it
        assert set(box.desk.cloud_keys) == {new.key_id}  # what acks and heads are opened with
    finally:
        box.booted.close()
    rebooted = _Box(site_toml, old)  # a restart: what was pushed is in its store
    try:
        assert set(rebooted.desk.cloud_keys) == {new.key_id}
    finally:
        rebooted.booted.close()


@pytest.mark.parametrize(
    ("trust", "words"),
    [
        ({"cloud_keys": ["zz"]}, "64 lower-case hex"),
        ({"cloud_keys": "ab" * 32}, "must be a list"),
        ({"cloud_keys": [], "retired_cloud_keys": []}, "names no key"),
    ],
)
def test_a_push_of_keys_that_are_not_keys_or_leave_none_is_refused_and_changes_nothing(
    tmp_path: Path, trust: dict, words: str
) -> None:
    signer = keys.NodeKey.from_seed(bytes(range(32)))
    box = _Box(write_site(tmp_path / "site", 2), signer)
    try:
        refused = box.push(signer, trust)
        assert refused.outcome == "refused" and refused.result is not None
        assert words in refused.result.reason
        assert set(box.desk.cloud_keys) == {signer.key_id}
        assert box.time_command(signer) == "applied"
    finally:
        box.booted.close()
