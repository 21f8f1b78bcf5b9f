"""Backups that restore (`voltbook-cloud backup create|list|restore|verify|drill`).

- PostgreSQL: pgBackRest (`pgbackrest`): full and incremental backups, the WAL archive and
  point-in-time recovery, its repository encrypted (`repo1-cipher-type`);
- SQLite (the default database): SQLite's online backup API into a sealed file
  (`sealed`: AES-256-GCM, the key from a key file or a passphrase, never beside the backup);
- `verify` restores into a scratch database and checks the books there (`books_check`), and
  the restore drill (`drills`) records each verify and raises an alarm when one fails.

The package's exceptions are below: `BackupError` and its branches. They are `CloudError`s, so
the CLI reports them as it reports any refusal (exit 2).
"""

from __future__ import annotations

from cloud.errors import CloudError


class BackupError(CloudError):
    """A backup could not be made, listed, restored or verified; the message says why."""


class KeyRefused(BackupError):
    """The backup key is missing, malformed, or kept where the backups are."""


class SealBroken(BackupError):
    """A sealed backup does not authenticate: tampered, truncated, reordered, another file, or
    the wrong key. Nothing of it was restored."""


class ToolFailed(BackupError):
    """pgBackRest (or PostgreSQL's programs) exited with an error; its output is in the message."""
