"""Local-port helpers shared by the service launchers: pick a free port, wait for a listener,
and read a log's tail for error messages."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel's pick for an ephemeral bind).

    Another process could take it before our server binds it; the launchers then fail with the
    server's own "address in use" in the log tail rather than silently using another port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, *, timeout: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Wait until host:port accepts connections; False on timeout or when `alive()` turns false.

    Polls with a growing interval (10 ms up to 100 ms): a server usually listens within a few
    tens of milliseconds, and the backoff keeps a slow start from spinning the CPU.
    """
    deadline = time.monotonic() + timeout
    interval = 0.01
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return True
        if not alive():
            return False
        time.sleep(interval)
        interval = min(interval * 2, 0.1)
    return port_accepts(host, port)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"
