"""axe-core in the browser tests: `assert_no_critical(page)` runs it on the page as it is and
fails on any violation of critical impact (a form field without a label, an image without a
name, a missing `lang` …), naming each rule and the elements it found.

axe-core's `axe.min.js` comes from the pinned dev dependency `axe-playwright-python` (which
ships it); it is put into the page through Playwright's evaluate (the DevTools protocol, which
the page's Content Security Policy does not govern), so the pages need no exception for it.
Violations of lesser impact are returned, for a test to look at; a test may name more impacts
to fail on (the people and dashboard screens fail on serious ones too: contrast, `lang`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import service_missing

HOW_TO_INSTALL = "pip install -e '.[dev]' (axe-playwright-python ships axe-core's axe.min.js)"


@cache
def _axe_script() -> str:
    try:
        import axe_playwright_python  # a dev dependency, only for these tests
    except ImportError:
        service_missing("axe-core", f"axe-playwright-python is not installed: {HOW_TO_INSTALL}")
    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text("utf-8")


def violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on `page` (WCAG 2 A and AA rules and its best practices)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_script())
    found: list[dict[str, Any]] = page.evaluate(
        "options => window.axe.run(document, options).then(r => r.violations)",
        {"resultTypes": ["violations"]},
    )
    return found


def describe(found: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + ", ".join(" ".join(n["target"]) for n in v["nodes"][:5])
        for v in found
    )


def assert_no_critical(page: Any, impacts: tuple[str, ...] = ("critical",)) -> list[dict[str, Any]]:
    """Fail on a violation of critical impact (or of any of `impacts`: `("critical",
    "serious")` holds contrast and `lang` too); return the others."""
    found = violations(page)
    failing = [v for v in found if v["impact"] in impacts]
    assert failing == [], f"{page.url}:\n{describe(failing)}"
    return found
