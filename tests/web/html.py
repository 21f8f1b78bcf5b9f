"""What the pages' tests read out of a page's HTML."""

from __future__ import annotations

import re


def csrf_of(html: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]
