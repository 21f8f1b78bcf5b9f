"""`voltbook-edge keys encrypt | rotate`: this concentrator's private keys.

    VOLTBOOK_KEY_PASSPHRASE_FILE=/root/key-passphrase \\
        voltbook-edge keys encrypt --config /etc/voltbook/site.toml
    voltbook-edge keys rotate --config /etc/voltbook/site.toml     (runtime stopped)

The node key (`[site] node_key`, default node.key) and the TLS key (`[cloud] key`) are rewritten
as encrypted PKCS#8 PEM with the key passphrase (`ledger.key_files`: the systemd credential
voltbook-key-passphrase, `$VOLTBOOK_KEY_PASSPHRASE_FILE` or `$VOLTBOOK_KEY_PASSPHRASE`), each
atomically (a temporary file fsynced, then renamed): a crash leaves the old file or the new one.
A key already encrypted is checked to open with that passphrase and left alone. The runtime then
needs the same passphrase to start (README, "TLS and key rotation": the systemd credential);
the commands that only verify (`voltbook-edge health`, the updater's check) do not: they read
node.pub (`edge.site.node_pub`), which `encrypt` writes when it is missing.

`rotate` replaces the node key (the one that signs checkpoints, snapshots and statuses) and
records the rotation in the chain (`ledger.key_rotation`): a new key is written beside the old
one (`node.key.next`, encrypted like the others when a passphrase is configured), the old key
signs the rotation bound to the chain's head and the store records it, then the new key
replaces the old file and its public half node.pub (cut short before that, node.pub names the
retired key, still on the recorded line of keys: the verifiers follow the rotation from it).
The next uplink batch carries the rotation and the cloud follows it. It takes the store's
writer lock, so the runtime must be stopped; cut short after the store recorded it, running it
again finishes the switch (the runtime refuses to start meanwhile).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from edge.site.identity import NODE_KEY
from edge.site.node_pub import public_path, publish, write_public
from edge.site.site_file import ENCRYPT_HINT
from ledger import key_files
from ledger.chain import NodeKey, key_id
from ledger.key_rotation import KeyRotation

if TYPE_CHECKING:
    from edge.store import Store

FAILED = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "keys",
        help="encrypt this concentrator's private keys at rest, or rotate its node key",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    encrypt = actions.add_parser(
        "encrypt", help="rewrite the node key and the TLS key encrypted with the key passphrase"
    )
    encrypt.add_argument("--config", type=Path, required=True, help="the site.toml")
    encrypt.set_defaults(func=run_encrypt)
    rotate = actions.add_parser(
        "rotate", help="replace the node key, recording the rotation in the chain"
    )
    rotate.add_argument("--config", type=Path, required=True, help="the site.toml")
    rotate.set_defaults(func=run_rotate)


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
        node_key = key_files.load_node_key(paths[0], secret, encrypt_hint="")
        done = [(path, key_files.encrypt_in_place(path, secret)) for path in paths]
        published = publish(paths[0], node_key.public_key)
    except (key_files.KeyFileError, OSError) as exc:
        print(f"voltbook-edge keys encrypt: {exc}", file=sys.stderr)
        return FAILED
    for path, changed in done:
        print(
            f"{path}: {'encrypted' if changed else 'already encrypted (the passphrase opens it)'}"
        )
    if published:
        print(f"{public_path(paths[0])}: the node's public key, for the commands that only verify")
    return 0


def rotate_node_key(store: Store, old: NodeKey, staged: Path, secret: bytes | None) -> KeyRotation:
    """Record a rotation from `old` to a new key written to `staged` (or, when the store
    already records one to the key in `staged`, that one); the caller then moves `staged` over
    the key file."""
    schedule = store.key_schedule
    assert schedule is not None  # opened with old's public key
    if old.key_id not in schedule.current:
        new = key_files.load_node_key(staged, secret, encrypt_hint="") if staged.is_file() else None
        if new is None or new.key_id not in schedule.current:
            raise key_files.KeyFileError(
                f"the store's node key is {', '.join(schedule.current)}, which neither "
                f"{staged.with_suffix('')} nor {staged} holds"
            )
        return store.key_rotations(schedule.since)[-1]
    new = NodeKey.generate()
    key_files.write_private_key(staged, key_files.private_pem(new.private_key, secret))
    chain = store.chain
    rotation = KeyRotation.sign(old, store.node, chain.seq, chain.head, new.public_key)
    with store.transaction() as tx:
        tx.add_key_rotation(rotation)
    return rotation


def run_rotate(args: argparse.Namespace) -> int:
    from edge.site import SiteConfigError, load_site
    from edge.store import Store, StoreError

    try:
        site = load_site(args.config)
        path = site.settings.node_key
        staged = path.with_name(f"{path.name}.next")
        secret = key_files.passphrase()
        old = key_files.load_node_key(path, secret, encrypt_hint=ENCRYPT_HINT)
        site.settings.data_dir.mkdir(parents=True, exist_ok=True)  # a box never run: seq 0
        with Store.open(
            site.settings.store_path, node=site.settings.node, public_key=old.public_key
        ) as store:
            rotation = rotate_node_key(store, old, staged, secret)
        key_files.write_private_key(path, staged.read_bytes())
        write_public(path, rotation.new_key)
        staged.unlink()
    except (SiteConfigError, key_files.KeyFileError, StoreError, OSError) as exc:
        print(f"voltbook-edge keys rotate: {exc}", file=sys.stderr)
        return FAILED
    print(
        f"{path}: node key {key_id(rotation.old_key)} rotated to {key_id(rotation.new_key)} at "
        f"seq {rotation.seq}; the next uplink batch carries the rotation to the cloud"
    )
    return 0
