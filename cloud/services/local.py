"""What the local server launchers (mosquitto, PostgreSQL) share: a working directory (or a
private temporary one when the unprivileged server user cannot enter it), restart on the same
port, and use as a context manager."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType
from typing import Self


class LocalServer:
    workdir: Path
    _rundir: Path | None
    _rundir_is_temp: bool

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the private runtime directory, if one was made."""
        self.stop()
        if self._rundir_is_temp and self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
            self._rundir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _dir(self) -> Path:
        return self._rundir if self._rundir is not None else self.workdir
