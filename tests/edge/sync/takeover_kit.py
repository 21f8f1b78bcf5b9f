"""A replacement box for a demo site: the same building (the simulated meters on disk keep
counting), another node id, key, store and configuration file holding none of the old box's
meters, shops or accounts (those arrive with the `takeover` command)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edge.store.config_db import ConfigDB, ConfigKind
from ledger.chain import NodeKey

TAKEN = ("meters", "shops", "accounts")


def replacement_site(site_toml: Path, node: str) -> Path:
    """Write `<node>.toml` beside `site_toml`: the same site and buses, its own identity and
    store, a configuration of the rules and tariffs only. Returns its path."""
    directory = site_toml.parent
    key = NodeKey.generate()
    key_file = directory / f"{node}.key"
    key_file.write_bytes(key.private_pem())
    os.chmod(key_file, 0o600)
    config = directory / f"{node}-config.json"
    shutil.copyfile(directory / "config.json", config)
    with ConfigDB.open(config) as db:
        kept = {k: [] if k.value in TAKEN else db.documents(k) for k in ConfigKind}
        db.replace_all(kept)
    text = site_toml.read_text()
    old_node = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in text.splitlines()
        if line.startswith("node =")
    )
    text = (
        text.replace(f'node = "{old_node}"', f'node = "{node}"')
        .replace('data_dir = "data"', f'data_dir = "data-{node}"')
        .replace('config = "config.json"', f'config = "{config.name}"')
        .replace('node_key = "node.key"', f'node_key = "{key_file.name}"')
        .replace('seed = "seed.json"\n', "")
    )
    out = directory / f"{node}.toml"
    out.write_text(text)
    return out


def documents_of(config: Path) -> dict[str, list[dict[str, object]]]:
    """The configuration documents of a site's config file, as a `config` command sends them."""
    with ConfigDB.open(config) as db:
        return {kind.value: db.documents(kind) for kind in ConfigKind}


def dump(value: object) -> str:
    return json.dumps(value, sort_keys=True)
