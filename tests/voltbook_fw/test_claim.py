"""`voltbook-fw claim`'s own parts: durations, and failures said in an installer's words (the
whole flow against a running cloud is in `tests/e2e/test_provision.py`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from voltbook_fw.claim import duration
from voltbook_fw.cli import main


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800), ("600", 600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 hours", "-5m", "1.5h", "h", "99999999s"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="90s, 30m, 2h or 7d"):
        duration(text)


def test_failures_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    base = ["claim", "--site", "1", "--token-file", str(token)]
    assert main([*base, "--cloud", "ftp://example"]) == 2
    assert "http:// or https://" in capsys.readouterr().err
    assert main([*base, "--cloud", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the cloud" in capsys.readouterr().err
    token.write_text("")
    assert main([*base, "--cloud", "http://127.0.0.1:9"]) == 2
    assert "is empty" in capsys.readouterr().err
