"""The runtime's command line, as an operator uses it: run, accounts, ledger (on sites written
by `voltbook-demo site`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from demo.site import DemoSite
from edge.runtime.boot import read_node_key
from edge.site import load_site
from edge.sync.session import OPLOG_HEAD_STATE
from ledger.chain import NodeKey, entry_hash, sign_checkpoint
from ledger.encoding import body_version, decode_transfer, encode_body
from ledger.encoding_v2 import FORMAT_V2, ID_END
from ledger.errors import DecodeError
from ledger.signed import OplogHead, trusted
from ledger.verify import verify_stored
from tests.edge.runtime.conftest import ROOT, cli, cli_command, demo, demo_cli, wait_running

pytestmark = pytest.mark.slow  # each test drives `voltbook-edge` in subprocesses


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo site written and run by the CLI (shared: the tests only read it, but the last)."""
    where = tmp_path_factory.mktemp("cli") / "site"
    made = demo_cli("site", "--dir", str(where), "--meters", "8", "--tariff", "flat")
    assert made.returncode == 0, made.stderr
    site_toml = Path(json.loads(made.stdout)["site"])
    run = cli("run", "--config", str(site_toml), "--speed", "3600", "--cycles", "6")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["cycles"] == 6 and summary["failed_cycles"] == 0
    return site_toml


def test_accounts_lists_balances_relays_and_alarms(ran: Path) -> None:
    result = cli("accounts", "--config", str(ran), "--json")
    assert result.returncode == 0, result.stderr
    accounts = json.loads(result.stdout)["accounts"]
    assert [a["id"] for a in accounts] == [f"A{n:04d}" for n in range(1, 9)]
    for account in accounts:
        assert {"id", "shop", "subsidy_wh", "prepaid_fen", "relay", "alarms"} <= set(account)
        assert account["relay"] in ("open", "closed")
        assert isinstance(account["subsidy_wh"], int) and isinstance(account["prepaid_fen"], int)
        assert account["meters"][0]["register_wh"] > 0
    text = cli("accounts", "--config", str(ran))
    assert text.returncode == 0 and "A0001" in text.stdout


def test_ledger_export_has_every_transfer_with_its_references(ran: Path) -> None:
    result = cli("ledger", "export", "--config", str(ran))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    entries = [x for x in lines if x["type"] == "entry"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert lines[-1]["type"] == "checkpoint" and lines[-1]["seq"] == entries[-1]["seq"]
    for entry in entries:
        assert {"seq", "id", "code", "debit", "credit", "amount", "unit", "refs"} <= set(entry)
    codes = {e["code"] for e in entries}
    assert {"recharge", "subsidy_issue", "consume"} <= codes
    assert all(e["refs"]["period"] == "2026-11" for e in entries if e["code"] == "subsidy_issue")
    consume = [e for e in entries if e["code"] == "consume"]
    assert all({"meter", "reg_from", "reg_to", "energy_wh"} <= set(e["refs"]) for e in consume)


def test_the_clouds_signed_oplog_head_kept_by_the_edge_is_printed(ran: Path) -> None:
    """`ledger cloud-oplog` prints the head the acks carried (`edge.sync.session`), a line
    `voltbook-cloud oplog verify --heads` reads; none yet: exit 1."""
    none = cli("ledger", "cloud-oplog", "--config", str(ran))
    assert none.returncode == 1 and "no ack has carried" in none.stderr
    cloud = NodeKey.from_seed(b"c" * 32)
    head = OplogHead.sign(7, bytes(range(32)), "2026-11-24T08:00:00+00:00", cloud)
    store = load_site(ran).settings.store_path
    with sqlite3.connect(store) as connection:  # as the session keeps it (`set_state`)
        connection.execute("INSERT INTO state (key, value) VALUES (?, ?)",
                           (OPLOG_HEAD_STATE, json.dumps(head.fields())))  # fmt: skip
    shown = cli("ledger", "cloud-oplog", "--config", str(ran))
    assert shown.returncode == 0, shown.stderr
    kept = OplogHead.from_fields(json.loads(shown.stdout))
    assert kept == head
    kept.verify(trusted(cloud.public_key))


def test_ledger_verify_passes_then_names_a_row_edited_inside_sqlite(
    ran: Path, tmp_path: Path
) -> None:
    shutil.copytree(ran.parent, tmp_path / "site")  # its own copy: this test edits the store
    ran = tmp_path / "site" / "site.toml"
    verified = cli("ledger", "verify", "--config", str(ran))
    assert verified.returncode == 0, verified.stderr
    summary = json.loads(verified.stdout)
    assert summary["ok"] and "subsidy_once_per_period" in summary["invariants"]
    assert summary["meters_checked"] == 8

    store = ran.parent / "data" / "edge.sqlite"
    with sqlite3.connect(store) as db:
        body = db.execute("SELECT body FROM ledger WHERE seq = 5").fetchone()[0]
        edited = replace(decode_transfer(bytes(body)), amount=1)
        forged = encode_body(edited, body_version(bytes(body)))  # canonical, in its own format
        db.execute("UPDATE ledger SET body = ? WHERE seq = 5", (forged,))
    refused = cli("ledger", "verify", "--config", str(ran))
    assert refused.returncode == 1
    assert "seq 5" in refused.stderr and "edited" in refused.stderr


def _last_row(store: Path) -> tuple[int, bytes, bytes]:
    with sqlite3.connect(store) as db:
        seq, prev_hash, body = db.execute(
            "SELECT seq, prev_hash, body FROM ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    return seq, bytes(prev_hash), bytes(body)


def test_ledger_verify_names_a_tampered_v2_body_and_a_rehashed_one_that_does_not_decode(
    ran: Path, tmp_path: Path
) -> None:
    """The store is verified from its rows as stored (version 2 bodies, `verify_stored`): a body
    changed under its hash is named; so is one whose hash, recorded head and signed checkpoint
    were all recomputed to match (by whoever holds the node key) but which is not a transfer,
    which only decoding every body finds (the full check's replay)."""
    for name in ("tampered", "rehashed"):
        shutil.copytree(ran.parent, tmp_path / name)
    tampered, rehashed = tmp_path / "tampered", tmp_path / "rehashed"
    seq, prev_hash, body = _last_row(tampered / "data" / "edge.sqlite")
    assert body_version(body) == FORMAT_V2

    transfer = decode_transfer(body)
    edited = encode_body(replace(transfer, amount=transfer.amount + 1), FORMAT_V2)
    with sqlite3.connect(tampered / "data" / "edge.sqlite") as db:
        db.execute("UPDATE ledger SET body = ? WHERE seq = ?", (edited, seq))
    refused = cli("ledger", "verify", "--config", str(tampered / "site.toml"))
    assert refused.returncode == 1, refused.stdout
    assert f"seq {seq}" in refused.stderr and "does not match its hash" in refused.stderr

    site = load_site(rehashed / "site.toml")
    garbage = body[:ID_END] + b"\xff" * (len(body) - ID_END)  # its id kept, the rest not a body
    with pytest.raises(DecodeError):
        decode_transfer(garbage)
    digest = entry_hash(site.settings.node, seq, prev_hash, garbage)
    checkpoint = sign_checkpoint(
        read_node_key(site.settings.node_key), site.settings.node, seq, digest
    )
    with sqlite3.connect(site.settings.store_path) as db:
        db.execute("UPDATE ledger SET body = ?, hash = ? WHERE seq = ?", (garbage, digest, seq))
        db.execute("UPDATE meta SET value = ? WHERE key = 'head'", (f"{seq}:{digest.hex()}",))
        changed = db.execute(
            "UPDATE checkpoints SET head = ?, key_id = ?, signature = ? WHERE seq = ?",
            (digest, checkpoint.key_id, checkpoint.signature, seq),
        ).rowcount
        rows = [
            (s, bytes(p), bytes(h), bytes(b))
            for s, p, h, b in db.execute(
                "SELECT seq, prev_hash, hash, body FROM ledger ORDER BY seq"
            )
        ]
    assert changed == 1  # the chain's head was signed: re-signed over the forged body
    public = read_node_key(site.settings.node_key).public_key
    assert verify_stored(site.settings.node, rows, [checkpoint], [public]).ok  # hashes all fit
    refused = cli("ledger", "verify", "--config", str(rehashed / "site.toml"))
    assert refused.returncode == 1, refused.stdout
    assert f"seq {seq}" in refused.stderr and "not a canonical transfer" in refused.stderr


@contextmanager
def systemd_notifications(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A notify socket read as systemd reads it: (its address, every message received)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify = str(tmp_path / "notify.sock")
    server.bind(notify)
    server.settimeout(0.5)
    messages: list[str] = []
    listening = threading.Event()
    listening.set()

    def listen() -> None:
        while listening.is_set():
            try:
                messages.append(server.recv(4096).decode())
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        yield notify, messages
    finally:
        listening.clear()
        listener.join()
        server.close()


def notified_env(notify: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": notify, **extra}


def test_export_accounts_and_verify_work_while_run_is_up_and_sigterm_stops_it(
    tmp_path: Path,
) -> None:
    site = demo(tmp_path, 8)
    with systemd_notifications(tmp_path) as (notify, messages):
        proc = subprocess.Popen(
            cli_command("run", "--config", str(site.site_toml), "--speed", "3600"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=notified_env(notify, WATCHDOG_USEC="400000"),
            cwd=ROOT,
        )
        try:
            assert wait_running(proc, 20)
            # The runtime's stderr must keep flowing while the other commands run.
            drain = threading.Thread(target=proc.stderr.read) if proc.stderr else None
            if drain:
                drain.start()
            for args in (("ledger", "export"), ("accounts", "--json"), ("ledger", "verify")):
                result = cli(*args, "--config", str(site.site_toml))
                assert result.returncode == 0, (args, result.stderr)
            proc.terminate()
            assert proc.stdout is not None
            out = proc.stdout.read()
            assert proc.wait(timeout=30) == 0
            if drain:
                drain.join()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    summary = json.loads(out)
    assert summary["stopped"] == "SIGTERM" and summary["cycles"] >= 1
    joined = "\n".join(messages)
    assert "READY=1" in joined and "WATCHDOG=1" in joined and "STOPPING=1" in joined
    assert "STATUS=cycle" in joined


@pytest.mark.slow
def test_simulated_meters_on_a_pty_with_wire_timing_at_real_speed(tmp_path: Path) -> None:
    site = demo(tmp_path, 2)
    result = cli("run", "--config", str(site.site_toml), "--cycles", "1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 meters read, 0 failed" in result.stderr


def test_speed_is_refused_for_real_buses(small_site: DemoSite) -> None:
    text = small_site.site_toml.read_text().replace(
        'kind = "simulated"', 'kind = "serial"\nport = "/dev/ttyUSB9"'
    )
    small_site.site_toml.write_text(text)
    result = cli("run", "--config", str(small_site.site_toml), "--speed", "60")
    assert result.returncode == 2
    assert "--speed 60 needs every bus simulated" in result.stderr


def test_a_missing_serial_port_is_that_bus_down_not_a_runtime_that_stops(
    small_site: DemoSite,
) -> None:
    text = small_site.site_toml.read_text().replace(
        'kind = "simulated"', 'kind = "serial"\nport = "/dev/ttyUSB9"'
    )
    small_site.site_toml.write_text(text)
    result = cli("run", "--config", str(small_site.site_toml), "--cycles", "1")
    assert result.returncode == 0, result.stderr  # no systemd restart loop: it runs, and says
    assert "bus_down" in result.stderr and "BUS DOWN: rs485-1" in result.stderr
    assert "/dev/ttyUSB9" in result.stderr and "Traceback" not in result.stderr


def test_run_until_stops_at_the_first_cycle_that_reaches_that_site_time(
    small_site: DemoSite, tmp_path: Path
) -> None:
    until = "2026-11-01T06:00"
    with systemd_notifications(tmp_path) as (notify, messages):
        result = subprocess.run(
            cli_command(
                "run",
                "--config",
                str(small_site.site_toml),
                "--speed",
                "36000",
                "--until",
                f"{until}:00+08:00",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            env=notified_env(notify),
            cwd=ROOT,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["stopped"].startswith("reached")
    # At 36000x a stall of a tenth of a second is an hour of site time, so where the last cycle
    # falls depends on the machine's load; what must hold is that every cycle before it was
    # short of that time and it was not.
    cycles = re.findall(r"STATUS=cycle \d+ at (\S+ \S+):", "\n".join(messages))
    assert len(cycles) == summary["cycles"] >= 2
    *before, last = [c.replace(" ", "T") for c in cycles]
    assert all(moment < until for moment in before) and last >= until
    assert summary["time"].startswith(last)


def test_the_systemd_unit_is_a_notify_service_with_a_watchdog_that_always_restarts() -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "edge" / "systemd" / "voltbook-edge.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and service["Restart"] == "always"
    assert int(service["WatchdogSec"]) > 0
    assert service["ExecStart"].split()[1:3] == ["run", "--config"]
