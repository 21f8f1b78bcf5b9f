"""Fixtures shared by the edge tests."""

from __future__ import annotations

import pytest

from ledger import key_files


@pytest.fixture
def no_key_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key passphrase from this process's environment (`ledger.key_files.passphrase`):
    each test sets the one it means."""
    for name in (key_files.PASSPHRASE_ENV, key_files.PASSPHRASE_FILE_ENV, "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
