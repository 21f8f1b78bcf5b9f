"""The scheduled backups and restore drill ship as systemd units (`cloud/systemd/`): each timer
starts a service that exists, each service's command is one `voltbook-cloud` accepts (parsed by
the real argument parser), and every `OnCalendar=` is one systemd reads."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cloud.cli import build_parser

UNITS = Path(__file__).resolve().parents[3] / "cloud" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text(encoding="utf-8"))
    return parser


def service_of(timer: str) -> tuple[str, str]:
    """The unit file a timer starts, and the instance (`%i`) it passes."""
    started = unit(timer)["Timer"]["Unit"]
    stem, _, rest = started.partition("@")
    if not rest:
        return started, ""
    return f"{stem}@.service", rest.removesuffix(".service")


def command(service: str, instance: str) -> list[str]:
    exec_start = unit(service)["Service"]["ExecStart"].replace("%i", instance)
    program, *args = shlex.split(exec_start)
    assert program.endswith("/voltbook-cloud")
    return args


TIMERS = sorted(p.name for p in UNITS.glob("*.timer"))


def test_the_timers_are_there() -> None:
    assert TIMERS == [
        "voltbook-backup-full.timer",
        "voltbook-backup-incr.timer",
        "voltbook-restore-drill.timer",
    ]


@pytest.mark.parametrize("timer", TIMERS)
def test_each_timer_runs_a_command_voltbook_cloud_accepts(timer: str) -> None:
    service, instance = service_of(timer)
    assert (UNITS / service).is_file(), service
    args = build_parser().parse_args(command(service, instance))
    assert args.config == Path("/etc/voltbook/cloud.toml")
    wanted = {
        "voltbook-backup-full.timer": ("run_create", "full"),
        "voltbook-backup-incr.timer": ("run_create", "incr"),
        "voltbook-restore-drill.timer": ("run_drill", None),
    }[timer]
    assert (args.func.__name__, getattr(args, "type", None)) == wanted
    assert unit(timer)["Install"]["WantedBy"] == "timers.target"
    assert unit(timer)["Timer"]["Persistent"] == "true"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("timer", TIMERS)
def test_systemd_reads_each_calendar(timer: str) -> None:
    calendar = unit(timer)["Timer"]["OnCalendar"]
    result = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Next elapse" in result.stdout
