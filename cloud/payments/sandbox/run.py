"""`voltbook-cloud payments sandbox`: the sandbox as a process, until Ctrl-C or SIGTERM.

Serves on loopback, writes its keys and `payments.toml` (the `[payments]` snippet for the
cloud, pointing at the sandbox and at `cloud_url` for notifications) into the directory, and
prints where they are.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from cloud.payments.sandbox.app import LOOPBACK, create_sandbox, serve_in_thread
from cloud.payments.sandbox.state import Knobs, SandboxState


def _say(line: str) -> None:
    print(line, flush=True)


def run_until_signal(
    directory: Path, *, port: int = 0, cloud_url: str = "http://127.0.0.1:8080",
    knobs: Knobs | None = None, say: Callable[[str], None] | None = None,
) -> None:  # fmt: skip
    say = say or _say
    sandbox = create_sandbox(state=SandboxState(knobs=knobs or Knobs()))
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with serve_in_thread(sandbox, LOOPBACK, port) as running:
            snippet = sandbox.keys.write(directory, api_base=running.url, notify_base=cloud_url)
            say(f"payment sandbox at {running.url} (WeChat Pay API v3 and Alipay gateway)")
            say(f"keys and the [payments] snippet for cloud.toml: {snippet}")
            stop.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
