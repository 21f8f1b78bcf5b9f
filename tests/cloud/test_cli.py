"""`voltbook-cloud`: help texts, `init`, `key`, `serve` as a real process stopped by
SIGTERM, and the `user` and `oplog` commands on every database backend."""

from __future__ import annotations

import datetime as dt
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, text, update

from cloud.cli import main
from cloud.config import load_config
from cloud.db.auth import User
from cloud.db.engine import session_factory
from cloud.keys import load
from cloud.services.pki import load_certificate

SERVE_START_S = 20.0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert out.startswith("usage: voltbook-cloud")
    for command in ("serve", "init", "key"):
        assert re.search(rf"^    {command} +\S", out, re.MULTILINE), command
    assert "examples:" in out


def test_serve_help_explains_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0
    assert out.startswith("usage: voltbook-cloud serve [-h] [--config FILE] [--data-dir DIR]")
    for words in ("SIGTERM", "embedded", "127.0.0.1:8080", "/docs", "--data-dir DIR"):
        assert words in out, words


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "COMMAND" in err


def test_init_writes_config_and_key_and_prints_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "init", "--dir", str(tmp_path / "vb"))
    assert code == 0
    config_path = tmp_path / "vb" / "cloud.toml"
    key = load(tmp_path / "vb" / "cloud-key.pem")
    public = key.public_key.public_bytes_raw().hex()
    assert f"cloud public key: {public}" in out
    assert f"cloud key id:     {key.key_id}" in out
    assert f"voltbook-cloud serve --config {config_path}" in out
    text = config_path.read_text()
    assert text.count("#") > 10  # commented
    config = load_config(config_path)
    assert config.cloud_key == tmp_path / "vb" / "cloud-key.pem"
    assert config.broker.embedded
    assert (tmp_path / "vb" / "cloud-key.pem").stat().st_mode & 0o777 == 0o600

    again, _, err = run(capsys, "init", "--dir", str(tmp_path / "vb"))
    assert again == 2
    assert "exists already" in err
    assert load(tmp_path / "vb" / "cloud-key.pem").key_id == key.key_id

    code, out, _ = run(capsys, "key", "--config", str(config_path))
    assert code == 0
    assert out.splitlines() == [f"cloud public key: {public}", f"cloud key id:     {key.key_id}"]


def test_key_without_a_key_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "key", "--data-dir", str(tmp_path))
    assert (code, out) == (2, "")
    assert "no cloud key" in err
    assert not (tmp_path / "cloud-key.pem").exists()


def test_device_cert_issues_a_certificate_named_for_the_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "data", tmp_path / "tls"
    code, printed, _ = run(capsys, "device-cert", "edge-0007", "--out", str(out),
                           "--data-dir", str(data))  # fmt: skip
    assert code == 0, printed
    assert 'cert = "edge-0007.crt"' in printed
    ca = load_certificate(data / "pki" / "ca.crt")  # the embedded broker's CA, made on demand
    cert = load_certificate(out / "edge-0007.crt")
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "edge-0007"
    assert (out / "ca.crt").read_bytes() == (data / "pki" / "ca.crt").read_bytes()
    assert stat.S_IMODE((out / "edge-0007.key").stat().st_mode) == 0o600
    # A second certificate comes from the same CA, not a new one.
    assert run(capsys, "device-cert", "edge-0008", "--out", str(out),
               "--data-dir", str(data))[0] == 0  # fmt: skip
    load_certificate(out / "edge-0008.crt").verify_directly_issued_by(ca)
    code, _, err = run(capsys, "device-cert", "edge/+", "--out", str(out), "--data-dir", str(data))
    assert code == 2 and "device name" in err


def test_serve_refuses_a_bad_config_in_a_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text("[api]\nport = 'eighty'\n")
    code, _, err = run(capsys, "serve", "--config", str(config))
    assert code == 2
    assert err.startswith(f"error: cannot use the configuration {config}: [api] port")
    assert "Traceback" not in err
    code, _, err = run(capsys, "serve", "--config", str(tmp_path / "missing.toml"))
    assert code == 2
    assert "does not exist" in err


@pytest.mark.slow  # `voltbook-cloud serve` in a subprocess until SIGTERM
def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text("[api]\nport = 0\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "cloud.cli", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    url: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            found = re.search(r"API (http://\S+) ", line)
            if found:
                url.append(found.group(1))
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(SERVE_START_S), "".join(lines)
        assert httpx.get(url[0] + "/health", timeout=5).json()["database"] is True
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, "".join(lines)
        assert time.monotonic() - began < 8
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    log = "".join(lines)
    assert f"database sqlite:///{tmp_path}/voltbook-cloud.db" in log
    assert re.search(r"broker 127\.0\.0\.1:\d+ \(embedded", log)
    assert f"cloud key {load(tmp_path / 'cloud-key.pem').key_id}" in log
    assert "SIGTERM received: stopping" in log
    assert "Traceback" not in log


def test_serve_without_its_database_says_so_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://vb:s3cret@127.0.0.1:1/vb"\n')
    code, _, err = run(capsys, "serve", "--config", str(config))
    assert code == 2
    assert err.startswith("error: the database postgresql+psycopg://vb:***@127.0.0.1:1/vb")
    assert "s3cret" not in err
    assert not (tmp_path / "cloud-key.pem").exists()  # nothing was started or made


def test_user_and_oplog_commands_read_well(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    for command in ("user", "oplog"):
        assert re.search(rf"^    {command} +\S", out, re.MULTILINE), command
    code, out, _ = run(capsys, "user", "add", "--help")
    assert code == 0
    for words in ("--role ROLE", "--password-file F", "asked for twice", "merchant"):
        assert words in out, words
    code, out, _ = run(capsys, "oplog", "verify", "--help")
    assert code == 0 and "exit 1" in out


def _config_for(engine: Engine, directory: Path) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    config = directory / "cloud.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    return config


def test_users_from_the_command_line_and_a_tampered_log(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On SQLite and PostgreSQL: `user add/list/unlock`, then `oplog verify` passes until a row
    is edited or deleted with raw SQL, and names that row."""
    config = str(_config_for(engine, tmp_path))
    secret = tmp_path / "password"
    secret.write_text("the admin's long password\n")
    code, out, err = run(capsys, "user", "add", "li", "--role", "admin",
                         "--password-file", str(secret), "--config", config)  # fmt: skip
    assert code == 0, err
    assert "user li (admin) created" in out
    code, _, err = run(capsys, "user", "add", "shop", "--role", "merchant",
                       "--password-file", str(secret), "--config", config)  # fmt: skip
    assert code == 2 and "names its account" in err
    run(capsys, "user", "add", "shop", "--role", "merchant", "--account", "A0001",
        "--password-file", str(secret), "--config", config)  # fmt: skip
    with session_factory(engine).begin() as session:
        session.execute(update(User).where(User.name == "shop").values(
            locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)))  # fmt: skip
    code, out, _ = run(capsys, "user", "list", "--config", config)
    assert code == 0
    assert re.search(r"^li +admin +yes", out, re.MULTILINE), out
    assert re.search(r"^shop +merchant +A0001 +yes +locked", out, re.MULTILINE), out
    assert run(capsys, "user", "unlock", "shop", "--config", config)[0] == 0
    assert "locked" not in run(capsys, "user", "list", "--config", config)[1]
    assert run(capsys, "user", "unlock", "nobody", "--config", config)[0] == 2

    code, out, _ = run(capsys, "oplog", "verify", "--config", config)
    assert code == 0 and out.startswith("operator log intact: 3 rows, head "), out
    code, out, _ = run(capsys, "oplog", "show", "--limit", "2", "--config", config)
    assert code == 0
    assert [line.split()[5] for line in out.splitlines()] == ["user.create", "user.unlock"]
    assert "password" not in out and "argon2" not in out

    with engine.begin() as connection:
        connection.execute(text("""UPDATE operator_log SET "after" = '{"x": 1}' WHERE seq = 2"""))
    code, out, err = run(capsys, "oplog", "verify", "--config", config)
    assert code == 1
    assert "operator log BROKEN: row 2 was altered" in err
    assert "the first 1 rows hold" in out
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM operator_log WHERE seq = 2"))
    code, _, err = run(capsys, "oplog", "verify", "--config", config)
    assert code == 1 and "row 2 is missing" in err


def test_books_verify(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On SQLite and PostgreSQL: sound books pass; a balance the ledger does not post, and a
    subsidy issued twice in one period on two concentrators, are named (exit 1)."""
    from cloud.chains.store import cloud_transfer
    from cloud.db.models import Balance, LedgerEntry
    from ledger.accounts import Pocket, System, pocket_id, system_id
    from ledger.encoding import encode_transfer
    from ledger.transfers import Code

    config = str(_config_for(engine, tmp_path))
    code, out, err = run(capsys, "books", "verify", "--config", config)
    assert (code, out) == (0, "books sound: 0 entries over 0 chains\n"), err
    issue = cloud_transfer(
        7, system_id(System.SUBSIDY_ISSUED), pocket_id("A0001", Pocket.SUBSIDY), 500,
        Code.SUBSIDY_ISSUE, dt.datetime(2026, 11, 1, tzinfo=dt.UTC), refs={"period": "2026-11"},
    )  # fmt: skip
    with session_factory(engine).begin() as session:
        for node in ("edge-a", "edge-b"):
            session.add(LedgerEntry(
                node=node, seq=1, transfer_id=f"{issue.id:032x}", prev_hash=bytes(32),
                hash=bytes(32), body=encode_transfer(issue), code=issue.code.value,
                kind=issue.kind.value, debit=issue.debit, credit=issue.credit,
                amount=issue.amount, unit=issue.unit.value, pending_id=None,
                time=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), refs=dict(issue.refs)))  # fmt: skip
        session.add(Balance(account=issue.credit, unit="Wh", debits_pending=0, debits_posted=0,
                            credits_pending=0, credits_posted=500))  # fmt: skip
    code, _, err = run(capsys, "books", "verify", "--config", config)
    assert code == 1
    assert "issued twice in period 2026-11" in err
    assert "Wh: posted balances sum to 500" in err
    assert "A0001:subsidy: the projection holds 500 posted, the ledger 1000" in err
