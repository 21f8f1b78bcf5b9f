"""`voltbook-fw ir-import`: a good handheld file becomes the cloud's import body; a bad one
names its line and exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from voltbook_fw.cli import main

GOOD = "address,read_at,energy_kwh\n000000000001,2026-11-24T09:30:00+08:00,1234.56\n"


def test_a_good_file_prints_the_api_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "hx2.csv"
    export.write_text(GOOD, encoding="utf-8")
    assert main(["ir-import", str(export)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"source": "hx2.csv", "readings": [
        {"address": "000000000001", "read_at": "2026-11-24T09:30:00+08:00",
         "energy_wh": 1_234_560}]}  # fmt: skip
    assert "1 reading(s) of 1 meter(s) OK" in captured.err


def test_a_bad_file_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "hx2.csv"
    export.write_text(GOOD + "000000000002,2026-11-24T09:31:00+08:00,12.3\n", encoding="utf-8")
    out = tmp_path / "body.json"
    assert main(["ir-import", str(export), "-o", str(out)]) == 2
    assert "line 3" in capsys.readouterr().err and not out.exists()
    assert main(["ir-import", str(tmp_path / "missing.csv")]) == 2
