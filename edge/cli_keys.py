"""`voltbook-edge keys encrypt`: encrypt this concentrator's private keys at rest, in place.

    VOLTBOOK_KEY_PASSPHRASE_FILE=/root/key-passphrase \\
        voltbook-edge keys encrypt --config /etc/voltbook/site.toml

The node key (`[site] node_key`, default node.key) and the TLS key (`[cloud] key`) are rewritten
as encrypted PKCS#8 PEM with the key passphrase (`ledger.key_files`: the systemd credential
voltbook-key-passphrase, `$VOLTBOOK_KEY_PASSPHRASE_FILE` or `$VOLTBOOK_KEY_PASSPHRASE`), each
atomically (a temporary file fsynced, then renamed): a crash leaves the old file or the new one.
A key already encrypted is checked to open with that passphrase and left alone. The runtime then
needs the same passphrase to start (README, "TLS and key rotation": the systemd credential).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from edge.site.identity import NODE_KEY
from ledger import key_files

FAILED = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "keys",
        help="encrypt this concentrator's private keys at rest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    encrypt = actions.add_parser(
        "encrypt", help="rewrite the node key and the TLS key encrypted with the key passphrase"
    )
    encrypt.add_argument("--config", type=Path, required=True, help="the site.toml")
    encrypt.set_defaults(func=run_encrypt)


def key_paths(site_toml: Path) -> list[Path]:
    """The private keys `site_toml` names: the node key, and the TLS key if it has one."""
    try:
        data = tomllib.loads(site_toml.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise key_files.KeyFileError(f"{site_toml} cannot be read as TOML ({exc})") from None
    base = site_toml.parent
    site, cloud = data.get("site"), data.get("cloud")
    node_key = site.get("node_key") if isinstance(site, dict) else None
    paths = [base / (node_key if isinstance(node_key, str) and node_key.strip() else NODE_KEY)]
    tls_key = cloud.get("key") if isinstance(cloud, dict) else None
    if isinstance(tls_key, str) and tls_key.strip():
        paths.append(base / tls_key)
    return paths


def run_encrypt(args: argparse.Namespace) -> int:
    try:
        secret = key_files.passphrase()
        if secret is None:
            raise key_files.KeyFileError(f"no key passphrase is configured: set {key_files.WHERE}")
        paths = key_paths(args.config)
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise key_files.KeyFileError(f"no key file at {', '.join(missing)}")
        for path in paths:  # every one opens before any is rewritten
            key_files.load_private_key(path, secret, encrypt_hint="")
        done = [(path, key_files.encrypt_in_place(path, secret)) for path in paths]
    except (key_files.KeyFileError, OSError) as exc:
        print(f"voltbook-edge keys encrypt: {exc}", file=sys.stderr)
        return FAILED
    for path, changed in done:
        print(
            f"{path}: {'encrypted' if changed else 'already encrypted (the passphrase opens it)'}"
        )
    return 0
