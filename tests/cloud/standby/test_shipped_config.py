"""The shipped Patroni configuration keeps the hot standby's promise, and `voltbook-cloud standby
local` refuses a work directory it cannot use without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloud.cli import main
from cloud.services.standby import LOCAL_TIMINGS, TEMPLATE


def test_the_shipped_configuration_is_strictly_synchronous() -> None:
    config = yaml.safe_load(TEMPLATE.read_text())
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["synchronous_mode_strict"] is True
    assert dcs["synchronous_node_count"] == 1
    assert dcs["postgresql"]["parameters"]["synchronous_commit"] == "on"
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_log_hints"] == "on"
    # Patroni wants the leader key to outlive a loop and two retries, in production and here.
    for timings in (dcs, LOCAL_TIMINGS):
        assert timings["ttl"] >= timings["loop_wait"] + 2 * timings["retry_timeout"]


def test_standby_local_refuses_a_directory_it_cannot_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a directory")
    assert main(["standby", "local", "--dir", str(occupied)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert occupied.read_text() == "not a directory"
