"""`voltbook-cloud`: the server side — ingest of edge ledgers, API, payments, reports.

    voltbook-cloud init --dir DIR                  a commented config file and the cloud key
    voltbook-cloud serve [--config FILE] [--data-dir DIR]
    voltbook-cloud key [--config FILE] [--data-dir DIR]
    voltbook-cloud device-cert NODE --out DIR [--config FILE] [--data-dir DIR]
    voltbook-cloud user add NAME --role ROLE [--account A] [--password-file F]
    voltbook-cloud user list | user unlock NAME
    voltbook-cloud oplog verify [--heads FILE] | oplog sign | oplog show [--limit N]
    voltbook-cloud payments sandbox --dir D [--port P] [--cloud URL] [knobs]
    voltbook-cloud payments reconcile --day YYYY-MM-DD [--config FILE]
    voltbook-cloud backup key|create|list|restore|verify|drill   (`cloud.cli_backup`)
    voltbook-cloud standby local --dir DIR         a throwaway hot standby on loopback

Exit codes: 0 done; 1 `oplog verify` found the log broken (the first broken row is named), or
`payments reconcile` found differences;
2 the configuration, the key, the database or a port is unusable, or a user command was
refused (the message says which file and what is wrong; nothing was started or changed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cloud.people import oplog
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
  voltbook-cloud device-cert edge-0001 --out tls/      a concentrator's TLS certificate
  voltbook-cloud user add li --role admin              the first login (asks for a password)
  voltbook-cloud oplog verify                          is the operator log intact?
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
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text (default) or one JSON object per line (default from "
        "VOLTBOOK_LOG_FORMAT)",
    )
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

    cert = commands.add_parser(
        "device-cert",
        help="issue a concentrator's TLS client certificate for the embedded broker",
        description=(
            "Issue a client certificate whose CN is NODE from the embedded broker's CA (made in "
            "the data directory's pki/ if missing) and write NODE.crt, NODE.key (0600) and "
            "ca.crt to DIR, for the concentrator's [cloud] ca/cert/key. The broker binds the "
            "client id to the CN and allows only the topics vb/NODE/..., so the certificate "
            "is the concentrator's identity: one per concentrator, never shared."
        ),
    )
    cert.add_argument("node", metavar="NODE", help="the concentrator's node id, e.g. edge-0001")
    cert.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write")
    _config_arguments(cert)
    cert.set_defaults(func=run_device_cert)
    _user_commands(commands)
    _oplog_commands(commands)
    _books_commands(commands)
    _payments_commands(commands)
    _keys_commands(commands)
    from cloud.cli_backup import add_backup_commands

    add_backup_commands(commands)
    _standby_commands(commands)
    return parser


ROLES = (
    "admin",
    "operator",
    "finance",
    "auditor",
    "installer",
    "merchant",
)  # cloud.people.auth.Role


def _user_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = commands.add_parser(
        "user",
        help="add, list and unlock the users who log in to the API",
        description=(
            "Manage logins on the server itself, without the API: the first admin is made "
            "here. Roles: admin (everything, users included), operator, finance, auditor "
            "(read-only), installer, merchant (its own account only). Every change goes to "
            "the operator log."
        ),
    )
    actions = user.add_subparsers(title="actions", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="create a user",
        description=(
            "Create a user. The password (at least 10 characters) is read from --password-file "
            "(its first line) or asked for twice on the terminal; it is never an argument, "
            "so it stays out of the shell history and the process list."
        ),
    )
    add.add_argument("name", metavar="NAME", help="login name: 1-64 of A-Z a-z 0-9 _ . @ -")
    add.add_argument(
        "--role", required=True, choices=ROLES, metavar="ROLE", help=f"one of {', '.join(ROLES)}"
    )
    add.add_argument("--account", metavar="A", help="a merchant's own account (merchants only)")
    add.add_argument("--display-name", default="", metavar="TEXT", help="the name shown")
    add.add_argument(
        "--password-file", type=Path, metavar="F", help="read the password from this file"
    )
    _config_arguments(add)
    add.set_defaults(func=run_user_add)
    listing = actions.add_parser("list", help="list the users", description="List the users.")
    _config_arguments(listing)
    listing.set_defaults(func=run_user_list)
    unlock = actions.add_parser(
        "unlock",
        help="lift a lockout after repeated wrong passwords",
        description="Lift a user's lockout (after too many wrong passwords) at once.",
    )
    unlock.add_argument("name", metavar="NAME")
    _config_arguments(unlock)
    unlock.set_defaults(func=run_user_unlock)


def _oplog_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    log = commands.add_parser(
        "oplog",
        help="verify or show the operator log",
        description=(
            "The operator log holds every login, logout and operator action, each row "
            "hash-chained to the one before it."
        ),
    )
    actions = log.add_subparsers(title="actions", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check the hash chain (exit 1 if broken)",
        description=(
            "Walk the whole log and check every row's hash, then hold it to every head signed "
            "with the cloud's key: the heads file ([oplog] heads) and any --heads given (a "
            "backup's copy, or the head a concentrator kept). Exit 0 and print the row count "
            "and the head hash when it holds; exit 1 naming the first row that was edited, "
            "removed or added out of turn, a rewrite with recomputed hashes, a head moved back "
            "or a wiped log."
        ),
    )
    verify.add_argument(
        "--heads",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="another file of signed heads (JSON lines) to check against (repeatable)",
    )
    _config_arguments(verify)
    verify.set_defaults(func=run_oplog_verify)
    sign = actions.add_parser(
        "sign",
        help="sign the log's head now into the heads file",
        description=(
            "Sign the operator log's head with the cloud's key and append it to the heads file "
            "([oplog] heads), as the server does every [oplog] sign_every seconds."
        ),
    )
    _config_arguments(sign)
    sign.set_defaults(func=run_oplog_sign)
    show = actions.add_parser(
        "show", help="print the latest rows", description="Print the latest rows, oldest first."
    )
    show.add_argument("--limit", type=int, default=20, metavar="N", help="rows (default 20)")
    _config_arguments(show)
    show.set_defaults(func=run_oplog_show)


def _books_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    books = commands.add_parser(
        "books",
        help="check the books",
        description="The ledger the cloud holds: every concentrator's chain and its own.",
    )
    actions = books.add_subparsers(title="actions", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check the invariants of the books (exit 1 if broken)",
        description=(
            "Over the union of the chains: no transfer twice, one subsidy per account and "
            "period, every payment credited exactly once (and no voided one); the balances "
            "projection sums to zero per unit and equals the ledger; the deposits report's "
            "totals equal the ledger's posted recharges and corrections. Exit 0 when all hold, "
            "1 printing each violation."
        ),
    )
    _config_arguments(verify)
    verify.set_defaults(func=run_books_verify)


def _payments_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    payments = commands.add_parser(
        "payments", help="online payments", description="WeChat Pay and Alipay."
    )
    actions = payments.add_subparsers(title="actions", metavar="ACTION", required=True)
    sandbox = actions.add_parser(
        "sandbox",
        help="play WeChat Pay and Alipay on loopback (tests, demo)",
        description=(
            "Serve a sandbox of both providers on 127.0.0.1 with keys made at start: WeChat "
            "Pay v3 orders, query and close; the Alipay gateway; a page /pay/NO where a person "
            "pays or cancels; notifications on the providers' retry schedules. Writes the "
            "keys and payments.toml (the [payments] table for cloud.toml) into DIR."
        ),
    )
    sandbox.add_argument("--dir", required=True, type=Path, help="where the keys go (created)")
    sandbox.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    sandbox.add_argument(
        "--cloud", default="http://127.0.0.1:8080", metavar="URL",
        help="the cloud's URL the notifications go to (default http://127.0.0.1:8080)",
    )  # fmt: skip
    sandbox.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the retry schedules' waits (0.01: 100 times faster)",
    )
    sandbox.add_argument("--duplicates", type=int, default=0, help="extra copies of a notice")
    sandbox.add_argument("--delay", type=float, default=0.0, help="seconds before a notice")
    sandbox.add_argument("--drop", action="store_true", help="send no notices (query only)")
    sandbox.add_argument("--gbk", action="store_true", help="Alipay notices in GBK")
    sandbox.set_defaults(func=run_payments_sandbox)  # fmt: skip
    reconcile = actions.add_parser(
        "reconcile",
        help="match a day's bills against the orders and the ledger",
        description=(
            "Download both providers' trade bills of DAY (Beijing time), match them against "
            "the payment orders, refunds and recharges, and store the day's reconciliation "
            "(every difference is also an alarm). Exit 1 when there are differences."
        ),
    )
    reconcile.add_argument("--day", required=True, type=dt.date.fromisoformat,
                           metavar="YYYY-MM-DD", help="the day (Beijing time)")  # fmt: skip
    _config_arguments(reconcile)
    reconcile.set_defaults(func=run_payments_reconcile)


def _standby_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    standby = commands.add_parser(
        "standby",
        help="the hot standby (PostgreSQL + Patroni)",
        description="Two PostgreSQL nodes with a synchronous standby, managed by Patroni "
        "(README: Operations, Hot standby; deploy/patroni/voltbook.yml).",
    )
    actions = standby.add_subparsers(title="actions", metavar="ACTION", required=True)
    local = actions.add_parser(
        "local",
        help="run a throwaway two-node topology on loopback (trials, tests)",
        description=(
            "Start etcd and two Patroni nodes on free 127.0.0.1 ports in DIR, configured "
            "from deploy/patroni/voltbook.yml (strict synchronous mode), print the multi-host "
            "[database] url that follows the primary, and run until Ctrl-C. Needs Debian's "
            "patroni and etcd-server."
        ),
    )
    local.add_argument("--dir", required=True, type=Path, help="work directory (created)")
    local.set_defaults(func=run_standby_local)


def run_standby_local(args: argparse.Namespace) -> int:
    from cloud.services.errors import ServiceError
    from cloud.services.standby import run_until_signal

    try:
        run_until_signal(args.dir, print)
    except (ServiceError, OSError) as exc:
        return _refuse(str(exc))
    return 0


def run_payments_sandbox(args: argparse.Namespace) -> int:
    from cloud.payments.sandbox.run import run_until_signal
    from cloud.payments.sandbox.state import Knobs

    knobs = Knobs(time_scale=args.time_scale, duplicates=args.duplicates, delay_s=args.delay,
                  drop=args.drop, alipay_charset="gbk" if args.gbk else "utf-8")  # fmt: skip
    try:
        run_until_signal(args.dir, port=args.port, cloud_url=args.cloud.rstrip("/"), knobs=knobs)
    except OSError as exc:
        return _refuse(str(exc))
    return 0


def run_payments_reconcile(args: argparse.Namespace) -> int:
    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.payments import reconcile
    from cloud.payments.providers import Providers

    try:
        config = load_config(args.config, args.data_dir)
        if config.payments is None:
            return _refuse("online payments are not configured ([payments] in cloud.toml)")
        providers = Providers.load(config.payments, _utc_now)
        try:
            with _database(args) as session:
                row = reconcile.reconcile(session, providers, args.day, _utc_now())
                rows, totals = list(row.rows), dict(row.totals)
        finally:
            providers.close()
    except (CloudError, OSError, ValueError) as exc:
        return _refuse(str(exc))
    for provider, figures in sorted(totals.items()):
        bill = (figures["bill_count"], figures["bill_paid_fen"], figures["bill_refunded_fen"])
        ours = (figures["count"], figures["paid_fen"], figures["refunded_fen"])
        print(f"{provider}: bill {bill[0]} paid {bill[1]} fen, refunded {bill[2]} fen; "
              f"ours {ours[0]} paid {ours[1]} fen, refunded {ours[2]} fen")  # fmt: skip
    for difference in rows:
        print(f"DIFFERENCE {difference['provider']} {difference['kind']} "
              f"{difference['out_trade_no']} {difference['out_refund_no']}: "
              f"{difference['detail']}")  # fmt: skip
    print(f"{args.day}: {'clean' if not rows else f'{len(rows)} differences'}")
    return 1 if rows else 0


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


@contextlib.contextmanager
def _database(args: argparse.Namespace) -> Iterator[Session]:
    """A session on the configured database, migrated first; committed if the block ends
    without an error. Raises `CloudError` with the reason when it cannot be used."""
    from sqlalchemy.exc import SQLAlchemyError

    from cloud.config import load_config
    from cloud.db.engine import make_engine, session_factory, upgrade
    from cloud.errors import CloudError

    if not args.verbose:  # a line per migration step would bury the answer
        logging.getLogger("alembic").setLevel(logging.WARNING)
    config = load_config(args.config, args.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    try:
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            raise CloudError(
                f"the database {config.database_shown} cannot be used: "
                f"{getattr(exc, 'orig', None) or exc}"
            ) from exc
        with session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def _cli_actor() -> oplog.Actor:
    import getpass

    from cloud.people import oplog

    return oplog.Actor(f"cli:{getpass.getuser()}"[:64], "system", "localhost")


def _read_password(path: Path | None) -> str:
    import getpass

    from cloud.errors import Invalid

    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    first = getpass.getpass("password (at least 10 characters): ")
    if getpass.getpass("the same again: ") != first:
        raise Invalid("the two passwords differ")
    return first


def run_user_add(args: argparse.Namespace) -> int:
    import datetime as dt

    from cloud.errors import CloudError
    from cloud.people import auth

    try:
        password = _read_password(args.password_file)
        with _database(args) as session:
            auth.create_user(
                session,
                args.name,
                args.role,
                password,
                account=args.account,
                display_name=args.display_name,
                actor=_cli_actor(),
                now=dt.datetime.now(dt.UTC),
            )
    except (CloudError, OSError, EOFError) as exc:
        return _refuse(str(exc) or "no password given")
    print(f"user {args.name} ({args.role}) created; log in with POST /auth/login")
    return 0


def run_user_list(args: argparse.Namespace) -> int:
    import datetime as dt

    from cloud.errors import CloudError
    from cloud.people import auth

    now = dt.datetime.now(dt.UTC)
    try:
        with _database(args) as session:
            rows = [
                (u.name, u.role, u.account or "", "yes" if u.active else "no",
                 "locked" if u.locked_until is not None and u.locked_until > now else "",
                 u.display_name)
                for u in auth.list_users(session)
            ]  # fmt: skip
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    header = ("name", "role", "account", "active", "lock", "display name")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def run_user_unlock(args: argparse.Namespace) -> int:
    import datetime as dt

    from cloud.errors import CloudError
    from cloud.people import auth

    try:
        with _database(args) as session:
            auth.unlock(session, args.name, actor=_cli_actor(), now=dt.datetime.now(dt.UTC))
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    print(f"user {args.name} unlocked")
    return 0


def run_oplog_verify(args: argparse.Namespace) -> int:
    from cloud import keys
    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.people import oplog, oplog_heads
    from ledger.signed import trusted

    try:
        config = load_config(args.config, args.data_dir)
        files = [p for p in (config.oplog_heads,) if p.exists()] + list(args.heads)
        heads = [head for path in files for head in oplog_heads.read_heads(path)]
        if heads and not config.cloud_key.exists():
            return _refuse(
                f"no cloud key at {config.cloud_key}: the signed heads cannot be checked"
            )
        ring = (
            trusted(keys.load(config.cloud_key).public_key, *keys.retired_keys(config.cloud_key))
            if heads
            else {}
        )
        with _database(args) as session:
            verdict = oplog.verify(session, heads, ring)
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    if not verdict.ok:
        print(f"operator log BROKEN: {verdict.problem}", file=sys.stderr)
        print(f"the first {verdict.rows} rows hold; their head is {verdict.head.hex()}")
    else:
        print(f"operator log intact: {verdict.rows} rows, head {verdict.head.hex()}")
    if heads:
        print(f"held to {len(heads)} signed head(s), the last at row {max(h.seq for h in heads)}")
    else:
        print(f"no signed heads ({config.oplog_heads} is missing): only the chain was checked")
    return 0 if verdict.ok else 1


def run_oplog_sign(args: argparse.Namespace) -> int:
    import datetime as dt

    from cloud import keys
    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.people import oplog_heads

    try:
        config = load_config(args.config, args.data_dir)
        if not config.cloud_key.exists():
            return _refuse(f"no cloud key at {config.cloud_key}: nothing can sign the head")
        key = keys.load(config.cloud_key)
        with _database(args) as session:
            head = oplog_heads.current(session, key, dt.datetime.now(dt.UTC))
        written = oplog_heads.HeadsFile(config.oplog_heads).append(head)
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    done = "signed into" if written else "already signed in"
    print(f"operator log head at row {head.seq} ({head.hash.hex()}) {done} {config.oplog_heads}")
    return 0


def run_books_verify(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from cloud.db.models import LedgerEntry
    from cloud.errors import CloudError
    from cloud.reports import books

    try:
        with _database(args) as session:
            problems = books.verify(session)
            entries, nodes = session.execute(
                select(func.count(), func.count(func.distinct(LedgerEntry.node))).select_from(
                    LedgerEntry
                )
            ).one()
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    for problem in problems:
        print(f"books BROKEN: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"books sound: {entries} entries over {nodes} chains")
    return 0


def run_oplog_show(args: argparse.Namespace) -> int:
    import json

    from cloud.errors import CloudError
    from cloud.people import oplog

    if args.limit < 1:
        return _refuse("--limit must be at least 1")
    try:
        with _database(args) as session:
            rows = list(session.scalars(oplog.entries(sort="-seq").limit(args.limit)))
            lines = [
                f"{e.seq:>6} {e.time:%Y-%m-%d %H:%M:%S} {e.user} ({e.role or '-'}) "
                f"{e.action} {e.target}"
                + (f" before={json.dumps(e.before, ensure_ascii=False)}" if e.before else "")
                + (f" after={json.dumps(e.after, ensure_ascii=False)}" if e.after else "")
                for e in reversed(rows)
            ]
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    print("\n".join(lines) if lines else "the operator log is empty")
    return 0


def run_device_cert(args: argparse.Namespace) -> int:
    import shutil

    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.services import ca_rotation
    from cloud.services.pki import issue_client_cert, load_or_create_ca
    from ledger.key_files import KeyFileError

    try:
        config = load_config(args.config, args.data_dir)
        load_or_create_ca(config.pki_dir)
        ca = ca_rotation.issuing_ca(config.pki_dir)  # the new CA during a rotation
        files = issue_client_cert(ca, args.out, args.node)
        shutil.copyfile(ca_rotation.trust_bundle(config.pki_dir), args.out / "ca.crt")
    except (CloudError, ValueError, OSError, KeyFileError) as exc:
        return _refuse(str(exc))
    print(f"wrote {files.cert}, {files.key} and {args.out / 'ca.crt'} (CA {ca.cert})")
    print("the concentrator's site.toml [cloud] section, with these files next to it:")
    print(f'  ca = "ca.crt"\n  cert = "{files.cert.name}"\n  key = "{files.key.name}"')
    return 0


def _keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys",
        help="encrypt the private keys at rest; rotate the command key and the CA",
        description=(
            "The cloud's private keys at rest and their rotation (README, 'TLS and key "
            "rotation'). The key passphrase comes from the systemd credential "
            "voltbook-key-passphrase, $VOLTBOOK_KEY_PASSPHRASE_FILE or $VOLTBOOK_KEY_PASSPHRASE."
        ),
    )
    actions = keys.add_subparsers(title="actions", metavar="ACTION", required=True)
    encrypt = actions.add_parser(
        "encrypt",
        help="rewrite the cloud key, the CA key and the API's TLS key encrypted, in place",
    )
    _config_arguments(encrypt)
    encrypt.set_defaults(func=run_keys_encrypt)
    command_key = actions.add_parser(
        "rotate-command-key",
        help="stage the next command key (both then trusted by the boxes), or --switch to it",
    )
    command_key.add_argument(
        "--switch",
        action="store_true",
        help="sign with the staged key from the next start, once every "
        "active concentrator applied a configuration carrying it",
    )
    command_key.add_argument("--force", action="store_true",
                             help="with --switch: switch although some have not (named in the "
                                  "operator log); they can no longer be commanded")  # fmt: skip
    _config_arguments(command_key)
    command_key.set_defaults(func=run_rotate_command_key)
    ca = actions.add_parser(
        "rotate-ca", help="stage a new broker CA (both then trusted), or --finish the rotation"
    )
    ca.add_argument("--finish", action="store_true", help="make the new CA the only one")
    _config_arguments(ca)
    ca.set_defaults(func=run_rotate_ca)


def run_keys_encrypt(args: argparse.Namespace) -> int:
    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.keys import next_path
    from ledger import key_files

    try:
        config = load_config(args.config, args.data_dir)
        secret = key_files.passphrase()
        if secret is None:
            return _refuse(f"no key passphrase is configured: set {key_files.WHERE}")
        paths = [config.cloud_key, config.pki_dir / "ca.key", config.pki_dir / "ca-next.key"]
        if config.api.tls is not None:
            paths.append(config.api.tls.key)
        paths.append(next_path(config.cloud_key))
        present = [path for path in paths if path.is_file()]
        for path in present:  # every one opens before any is rewritten
            key_files.load_private_key(path, secret, encrypt_hint="")
        done = [(path, key_files.encrypt_in_place(path, secret)) for path in present]
    except (CloudError, OSError, key_files.KeyFileError) as exc:
        return _refuse(str(exc))
    for path, changed in done:
        print(f"{path}: {'encrypted' if changed else 'already encrypted'}")
    print("the server needs the same passphrase to start (README, 'TLS and key rotation')")
    return 0


def run_rotate_command_key(args: argparse.Namespace) -> int:
    import datetime as dt

    from cloud import keys
    from cloud.chains import command_keys
    from cloud.config import load_config
    from cloud.errors import CloudError

    now = dt.datetime.now(dt.UTC)
    try:
        config = load_config(args.config, args.data_dir)
        if args.switch:
            with _database(args) as session:
                lagging = _nodes_without_next_key(session, config.cloud_key, args.force, now)
                if lagging and not args.force:
                    return _refuse(
                        f"{len(lagging)} active concentrator(s) have not applied a "
                        f"configuration carrying the next key: {', '.join(lagging)}. Push "
                        "their configuration (`POST /registry/push`) and wait for it to be "
                        "applied, or switch anyway with --force (they can then no longer be "
                        "commanded until re-provisioned)"
                    )
                old, new = keys.switch(config.cloud_key)
                command_keys.switched(session, old.public_key, new.public_key, now)
        else:
            staged = keys.stage_next(config.cloud_key)
            with _database(args) as session:  # what the next configuration pushes tell the boxes
                command_keys.staged(session, staged.public_key, now)
    except (CloudError, OSError) as exc:
        return _refuse(str(exc))
    if args.switch:
        print(f"the cloud signs with key {new.key_id} from its next start; {old.key_id} is "
              f"retired ({keys.retired_path(config.cloud_key)})")  # fmt: skip
        print("restart the cloud, then push every box's configuration (`POST /registry/push`, "
              f"or the console's registry): the boxes then drop key {old.key_id}")  # fmt: skip
        return 0
    print(f"next command key {staged.key_id}: {_public_hex(staged)}")
    print(f"staged in {keys.next_path(config.cloud_key)}; the cloud still signs with the current "
          "key. Push every box's configuration (`POST /registry/push`, or the console's "
          "registry): each box trusts the next key once it applied its configuration")  # fmt: skip
    print("then: voltbook-cloud keys rotate-command-key --switch (and restart the cloud)")
    return 0


def _nodes_without_next_key(
    session: Session, cloud_key: Path, force: bool, now: dt.datetime
) -> list[str]:
    """The active nodes not yet trusting the staged command key; a forced switch past them is
    recorded in the operator log."""
    from cloud import keys
    from cloud.chains import command_keys
    from cloud.errors import Invalid
    from cloud.people import oplog

    staged = keys.next_path(cloud_key)
    if not staged.exists():
        raise Invalid(f"no next key staged at {staged}: run `keys rotate-command-key` first")
    next_key = keys.load(staged)
    lagging = command_keys.not_yet_trusting(session, next_key.public_key)
    if lagging and force:
        after = {"not_yet_trusting": lagging}
        target = f"key:{next_key.key_id}"
        oplog.record(session, _cli_actor(), "command_key.switch_forced", target, None, after, now)
    return lagging


def run_rotate_ca(args: argparse.Namespace) -> int:
    from cloud.config import load_config
    from cloud.errors import CloudError
    from cloud.services import ca_rotation
    from ledger.key_files import KeyFileError

    try:
        config = load_config(args.config, args.data_dir)
        if args.finish:
            files = ca_rotation.finish(config.pki_dir)
            print(f"{files.cert} is the only CA now; restart the cloud: the broker then refuses "
                  "certificates of the old CA")  # fmt: skip
            return 0
        files = ca_rotation.stage(config.pki_dir)
    except (CloudError, OSError, ValueError, KeyFileError) as exc:
        return _refuse(str(exc))
    print(f"new CA {files.cert} staged; restart the cloud: the broker then trusts both CAs and "
          "boxes get certificates of the new one (POST /provision, device-cert)")  # fmt: skip
    print("when every box has a certificate of the new CA and both CAs as its [cloud] ca: "
          "voltbook-cloud keys rotate-ca --finish")  # fmt: skip
    return 0


def _public_hex(key: NodeKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def main(argv: Sequence[str] | None = None) -> int:
    from cloud import logs

    args = build_parser().parse_args(argv)
    logs.configure(logging.DEBUG if args.verbose else logging.INFO,
                   logs.chosen_format(args.log_format))  # fmt: skip
    if not args.verbose:  # one line per Alembic plugin at every start says nothing useful
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
