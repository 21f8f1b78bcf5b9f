"""`[metrics]` of cloud.toml from the file to the scrape: the settings refused in a sentence when
unusable, `voltbook-cloud serve` answering `/metrics` with the token only, and its log as JSON
lines on request (`--log-format json`, or `VOLTBOOK_LOG_FORMAT=json`)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from cloud import logs as cloud_logs
from cloud.config import RESTORE_DRILL_FILE, ConfigError, load_config
from edge import logs as edge_logs
from tests.cloud.metrics_scrape import parse, value

TOKEN = "0123456789abcdef0123456789abcdef"
START_S = 20.0


def write_config(tmp_path: Path, metrics: str) -> Path:
    config = tmp_path / "cloud.toml"
    config.write_text(f"[api]\nport = 0\n\n[metrics]\n{metrics}\n")
    return config


def test_metrics_settings(tmp_path: Path) -> None:
    (tmp_path / "metrics-token").write_text(TOKEN + "\n")
    config = load_config(write_config(tmp_path, 'token_file = "metrics-token"'))
    assert config.metrics is not None and config.metrics.token() == TOKEN
    assert config.restore_drill == tmp_path / RESTORE_DRILL_FILE
    config = load_config(write_config(tmp_path, 'token_file = "metrics-token"\n'
                                                'restore_drill = "drills/last.json"'))  # fmt: skip
    assert config.restore_drill == tmp_path / "drills" / "last.json"
    assert load_config(None, tmp_path / "data").metrics is None  # off without the table


@pytest.mark.parametrize(
    ("metrics", "token", "problem"),
    [
        ("", None, "[metrics] token_file must be the path of a file"),
        ('token_file = "missing"', None, "cannot be read"),
        ('token_file = "metrics-token"', "short", "16 to 256 printable ASCII"),
        ('token_file = "metrics-token"', "with a space in it 0123456789", "no spaces"),
        ('token_file = "metrics-token"', "令牌" * 10, "printable ASCII"),
        ('token_file = "metrics-token"\nopen = true', TOKEN, "unknown key [metrics] open"),
        ("token_file = 7", TOKEN, "[metrics] token_file must be"),
    ],
)
def test_unusable_metrics_settings_are_refused(
    tmp_path: Path, metrics: str, token: str | None, problem: str
) -> None:
    if token is not None:
        (tmp_path / "metrics-token").write_text(token)
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path, metrics))
    assert problem in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_edge_and_cloud_write_the_same_json_lines() -> None:
    try:
        raise ValueError("a bad value")
    except ValueError:
        record = logging.LogRecord(
            "cloud.ingest", logging.ERROR, __file__, 1, "node %s: %s", ("edge-0001", "refused"),
            sys.exc_info(),
        )  # fmt: skip
    line = cloud_logs.JsonLines().format(record)
    assert "\n" not in line
    assert line == edge_logs.JsonLines().format(record)
    document = json.loads(line)
    assert document["level"] == "ERROR" and document["logger"] == "cloud.ingest"
    assert document["message"] == "node edge-0001: refused"
    assert document["time"].endswith("Z")
    assert document["exc"].startswith("Traceback") and "ValueError: a bad value" in document["exc"]
    odd = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (object(),), None)
    assert json.loads(cloud_logs.JsonLines().format(odd))["message"].startswith("<object")


@pytest.mark.slow  # `voltbook-cloud serve` in a subprocess until SIGTERM
def test_serve_answers_metrics_with_the_token_and_logs_json_lines(tmp_path: Path) -> None:
    (tmp_path / "metrics-token").write_text(TOKEN)
    config = write_config(tmp_path, 'token_file = "metrics-token"')
    env = {**os.environ, "VOLTBOOK_LOG_FORMAT": "text"}  # the option wins over the environment
    process = subprocess.Popen(
        [sys.executable, "-m", "cloud.cli", "--log-format", "json", "serve", "--config",
         str(config)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
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
        assert started.wait(START_S), "".join(lines)
        with httpx.Client(base_url=url[0], timeout=10) as client:
            assert client.get("/metrics").status_code == 401
            assert client.get("/health").status_code == 200
            answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        samples = parse(answer.text)
        assert value(samples, "voltbook_metrics_database_up") == 1
        assert value(samples, "voltbook_api_requests_total", method="GET", route="/health",
                     status="200") == 1  # fmt: skip
        assert value(samples, "voltbook_restore_drill_last_run_timestamp_seconds") == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    records = [json.loads(line) for line in lines]  # every line: one JSON object
    messages = [r["message"] for r in records]
    assert any(m.startswith("API http://") for m in messages)
    assert "SIGTERM received: stopping" in messages
    assert all(r["level"] in ("DEBUG", "INFO", "WARNING") for r in records), records
    assert TOKEN not in "".join(lines)
