"""`voltbook-cloud`: the server side — ingest of edge ledgers, API, payments, reports.

    voltbook-cloud init --dir DIR                  a commented config file and the cloud key
    voltbook-cloud serve [--config FILE] [--data-dir DIR]
    voltbook-cloud key [--config FILE] [--data-dir DIR]

Exit codes: 0 done; 2 the configuration, the key or a port is unusable (the message says which
file and what is wrong; nothing was started).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.chain import NodeKey

DESCRIPTION = """\
Voltbook cloud: takes merchants' WeChat Pay and Alipay payments, ingests and verifies every
concentrator's signed ledger over MQTT, sends signed commands (top-ups, relay trips, tariffs)
back, and serves the operator API, reports and the audit log.
"""

EPILOG = """\
examples:
  voltbook-cloud init --dir /srv/voltbook              config file, signing key, next steps
  voltbook-cloud serve --config /srv/voltbook/cloud.toml
  voltbook-cloud serve --data-dir /tmp/vb              all defaults: SQLite, embedded broker
  voltbook-cloud key --config /srv/voltbook/cloud.toml the public key concentrators trust
  voltbook-cloud COMMAND --help                        more about one command
"""

CONFIG_NAME = "cloud.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voltbook-cloud",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="voltbook-cloud 0.1.0")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the cloud: database, broker, ingest and the HTTP API",
        description=(
            "Migrate the database, load (or create) the cloud's signing key, start the "
            "embedded MQTT broker unless an external one is configured, start the ingest "
            "workers and serve the HTTP API (OpenAPI at /docs). Stops cleanly on SIGTERM or "
            "Ctrl-C. Without --config every setting takes its default: SQLite and the "
            "embedded broker in the data directory, the API on 127.0.0.1:8080."
        ),
    )
    _config_arguments(serve)
    serve.set_defaults(func=run_serve)

    init = commands.add_parser(
        "init",
        help="write a commented config file and the cloud's key",
        description=(
            f"Write DIR/{CONFIG_NAME} (every setting at its default, with comments) and the "
            "cloud's Ed25519 signing key, and print its public key: every concentrator's "
            "site configuration needs it to trust the cloud's commands. An existing key is "
            "kept; an existing config file is not overwritten."
        ),
    )
    init.add_argument("--dir", required=True, type=Path, help="directory to write (created)")
    init.set_defaults(func=run_init)

    key = commands.add_parser(
        "key",
        help="print the cloud's public key for the concentrators",
        description="Print the public half of the cloud's signing key and its key id.",
    )
    _config_arguments(key)
    key.set_defaults(func=run_key)
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"the {CONFIG_NAME} (default: all defaults)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the defaults live: database, key, broker files (default: the config "
        "file's directory, or ./voltbook-data without one)",
    )


def _refuse(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run_serve(args: argparse.Namespace) -> int:
    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.server import serve_until_signal
    from cloud.services.errors import ServiceError

    try:
        config = load_config(args.config, args.data_dir)
        serve_until_signal(config)
    except (CloudError, ServiceError, OSError) as exc:
        return _refuse(str(exc))
    return 0


def run_init(args: argparse.Namespace) -> int:
    from cloud import keys
    from cloud.config import KEY_FILE, TEMPLATE
    from cloud.errors import CloudError

    directory: Path = args.dir
    config = directory / CONFIG_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if config.exists():
            return _refuse(f"{config} exists already: not overwritten (delete it to start over)")
        key = keys.load_or_create(directory / KEY_FILE)
        config.write_text(TEMPLATE.format(name=config.name, key=KEY_FILE), encoding="utf-8")
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    print(f"wrote {config} and the cloud key {directory / KEY_FILE}")
    print(f"cloud public key: {_public_hex(key)}")
    print(f"cloud key id:     {key.key_id}")
    print("give the public key to every concentrator (its site configuration trusts it), then:")
    print(f"  voltbook-cloud serve --config {config}")
    return 0


def run_key(args: argparse.Namespace) -> int:
    from cloud import keys
    from cloud.config import load_config
    from cloud.errors import CloudError

    try:
        config = load_config(args.config, args.data_dir)
        if not config.cloud_key.exists():
            return _refuse(
                f"no cloud key at {config.cloud_key} yet: `voltbook-cloud init` or `serve` "
                "creates it"
            )
        key = keys.load_or_create(config.cloud_key)
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    print(f"cloud public key: {_public_hex(key)}")
    print(f"cloud key id:     {key.key_id}")
    return 0


def _public_hex(key: NodeKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # one line per Alembic plugin at every start says nothing useful
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
