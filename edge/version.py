"""`voltbook-edge --version`: the package's version, and the bundle's when installed from one.

`voltbook-fw install` puts the virtualenv at `/opt/voltbook/versions/<N>/venv` beside the
bundle's `manifest.json`; its integer `version` is what the fleet compares. Run from a checkout
or a plain pip install, there is no manifest and only the package version is printed.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path


def package_version() -> str:
    try:
        return metadata.version("voltbook")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def bundle_version(prefix: Path) -> int | None:
    """The `version` of the manifest beside the virtualenv at `prefix`, if any."""
    try:
        body = json.loads((prefix.parent / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return version if type(version) is int else None


def describe() -> str:
    text = f"voltbook-edge {package_version()}"
    bundle = bundle_version(Path(sys.prefix))
    return text if bundle is None else f"{text} (bundle {bundle})"
