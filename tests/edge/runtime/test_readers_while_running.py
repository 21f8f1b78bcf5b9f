"""`accounts` and `ledger verify --config` while `voltbook-edge run` writes the same store (issue
12, item 4): every run succeeds and reports the state of one commit.

All real: the runtime runs a demo site at 3600x in a subprocess, and the readers are the
operator's commands, each its own process, started back to back while cycles commit. A reader
still refuses a store whose tail was really deleted, and reports (not refuses) entries that are
not yet checkpointed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from tests.edge.runtime.conftest import ROOT, cli, cli_command, demo, wait_running

pytestmark = pytest.mark.slow  # drives `voltbook-edge` in subprocesses

ROUNDS = 20  # each round: `accounts --json`, then `ledger verify --config`


@pytest.mark.timeout(600)
def test_accounts_and_verify_never_see_a_torn_store_while_run_writes(tmp_path: Path) -> None:
    site = demo(tmp_path, 8, tariff="flat")
    config = str(site.site_toml)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        cli_command("run", "--config", config, "--speed", "3600"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    seqs: list[int] = []  # the head each reader saw, in the order they ran
    try:
        assert wait_running(proc, 30)
        drain = threading.Thread(target=proc.stderr.read) if proc.stderr else None
        if drain:
            drain.start()
        for _ in range(ROUNDS):
            accounts = cli("accounts", "--config", config, "--json")
            assert accounts.returncode == 0, accounts.stderr
            document = json.loads(accounts.stdout)
            assert [a["id"] for a in document["accounts"]] == [f"A{n:04d}" for n in range(1, 9)]
            assert 0 <= document["not_checkpointed"] <= document["seq"]
            seqs.append(document["seq"])

            verify = cli("ledger", "verify", "--config", config)
            assert verify.returncode == 0, verify.stderr
            summary = json.loads(verify.stdout)
            assert summary["ok"] is True
            assert "balances_sum_to_zero" in summary["invariants"]
            assert summary["meters_checked"] == 8
            assert summary["entries"] == (summary["last_seq"] or 0)
            assert summary["signed_through"] + summary["not_checkpointed"] == (
                summary["last_seq"] or 0
            )
            seqs.append(summary["last_seq"] or 0)
        proc.terminate()
        assert proc.stdout is not None
        out = proc.stdout.read()
        assert proc.wait(timeout=60) == 0
        if drain:
            drain.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    written = json.loads(out)
    assert written["stopped"] == "SIGTERM" and written["failed_cycles"] == 0
    assert seqs == sorted(seqs), "a later reader saw an older head"
    assert seqs[-1] <= written["seq"]
    assert len(set(seqs)) > 1, "the runtime committed nothing while being read"
    # And after it stopped, the whole ledger still verifies, signed to its head.
    final = cli("ledger", "verify", "--config", config)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["last_seq"] == written["seq"]


@pytest.fixture
def stopped_site(tmp_path: Path) -> tuple[str, Path]:
    """A demo site the runtime ran for a few cycles and left: its config and its store."""
    site = demo(tmp_path, 8, tariff="flat")
    run = cli("run", "--config", str(site.site_toml), "--speed", "3600", "--cycles", "4")
    assert run.returncode == 0, run.stderr
    store = next((site.site_toml.parent / "data").glob("*.sqlite"))
    return str(site.site_toml), store


def test_the_readers_still_report_a_genuinely_deleted_tail(stopped_site: tuple[str, Path]) -> None:
    config, store = stopped_site
    with sqlite3.connect(store) as conn:
        conn.execute("DELETE FROM ledger WHERE seq = (SELECT max(seq) FROM ledger)")
    before = store.read_bytes()
    for args in (("accounts", "--json"), ("ledger", "verify"), ("ledger", "export")):
        result = cli(*args, "--config", config)
        assert result.returncode == 1, (args, result.stdout)
        assert "tail rows deleted" in result.stderr and "is corrupt" in result.stderr
    assert store.read_bytes() == before  # a reader repairs nothing and deletes nothing


def test_an_unsigned_tail_is_reported_not_refused(stopped_site: tuple[str, Path]) -> None:
    """Entries after the last checkpoint (e.g. its signature was not stored: disk full) are
    what the runtime signs next, not damage."""
    config, store = stopped_site
    with sqlite3.connect(store) as conn:
        head = conn.execute("SELECT max(seq) FROM ledger").fetchone()[0]
        conn.execute("DELETE FROM checkpoints WHERE seq = ?", (head,))
        signed = conn.execute("SELECT max(seq) FROM checkpoints").fetchone()[0] or 0
    assert signed < head
    verify = cli("ledger", "verify", "--config", config)
    assert verify.returncode == 0, verify.stderr
    summary = json.loads(verify.stdout)
    assert (summary["ok"], summary["not_checkpointed"]) == (True, head - signed)
    assert f"{head - signed} entries not yet checkpointed" in verify.stderr
    accounts = json.loads(cli("accounts", "--config", config, "--json").stdout)
    assert (accounts["seq"], accounts["not_checkpointed"]) == (head, head - signed)
