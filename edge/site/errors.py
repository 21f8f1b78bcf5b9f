"""The site configuration's one error: which file, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class SiteConfigError(Exception):
    """The site configuration cannot be used; nothing was read into effect or written.

    The message is one sentence naming the file and the problem, for an installer to act on.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(
            f"cannot use the site configuration {path}: {problem} (nothing was changed; fix "
            "the file or restore its backup, then start again)"
        )
        self.path = Path(path)
        self.problem = problem
