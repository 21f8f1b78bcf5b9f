"""The cloud server's configuration: one TOML file, every key optional.

    [database]
    url = "postgresql+psycopg://voltbook@db.example/voltbook"   # default: SQLite in the data dir

    [broker]                     # either an external broker …
    host = "mqtt.example"
    port = 8883                  # default 1883, or 8883 with [broker.tls]
    [broker.tls]                 # the cloud's client credentials (PEM); all three or none
    ca = "pki/ca.crt"
    cert = "pki/cloud.crt"
    key = "pki/cloud.key"
    # … or `embedded = true` (the default): Mosquitto started in the data dir, its own CA in
    # `pki/`; devices connect with TLS certificates on `listen`:`port` (port: any free if not
    # given), the cloud on a loopback TLS listener of its own
    listen = "0.0.0.0"           # the devices listener's address (default 127.0.0.1)
    names = ["mqtt.example"]     # host names / IPs in the broker's certificate (+ localhost)
    plain_port = 1883            # the demo's plain listener, 127.0.0.1 only (0: any free port)

    [api]
    host = "127.0.0.1"           # default 127.0.0.1
    port = 8080                  # default 8080
    workers = 1                  # API processes sharing the port (default 1; ingest stays in one)
    trusted_proxies = ["127.0.0.1"]  # whose X-Forwarded-For names the client (default: none)
    tls_cert = "tls/api.crt"     # serve HTTPS with this certificate (chain) and key (PEM; the
    tls_key = "tls/api.key"      # key may be encrypted with the key passphrase); both or none
    tls_proxy = false            # true: a TLS reverse proxy among trusted_proxies terminates
                                 # HTTPS (its X-Forwarded-Proto: https is believed)

    [keys]
    cloud = "cloud-key.pem"      # the cloud's Ed25519 signing key, created if missing

    [provision]                  # what `POST /provision` tells a concentrator it claims
    broker_host = "mqtt.example" # the devices listener as boxes reach it (default: the first of
    broker_port = 8883           # [broker] names beyond localhost, else host; port: the broker's)

    [updates]
    bundles = "bundles"          # GET /updates/bundles/<sha256> serves <sha256>.tar from here
                                 # (default: not served; offer any other URL the boxes reach)

    [ingest]
    workers = 1                  # ingest workers in the server process
    partitions = 4               # every node's uplink goes to one worker: the one of partition
    partition = 0                # hash(node) % partitions (`cloud.ingest.routing`); this
                                 # server's workers take partition … partition + workers − 1
                                 # (default: partitions = workers, partition 0: the only server)
    # routing = "broker"         # instead: one `$share/ingest` group, the broker routes each
                                 # node to one worker (EMQX hash_clientid); no partitions then
    silent_after_min = 45        # a node whose status says online but that sent nothing for
                                 # this long counts offline (silent); 1 to 10080

    [operations]
    approve_corrections_above_fen = 100000   # a larger correction waits for a second user
    [oplog]
    heads = "oplog-heads.jsonl"  # the operator log's signed heads (default: in the data dir)
    sign_every = 300             # seconds between signed heads (default 300)

    [backup]                     # `voltbook-cloud backup …` (`cloud.backups`)
    repository = "backups"       # SQLite: the sealed backups (default: backups/ in the data dir)
    key_file = "/etc/voltbook/backup.key"  # the key sealing them; never inside the repository
    passphrase_env = "VOLTBOOK_BACKUP_PASSPHRASE"  # without key_file: the passphrase's variable
    pgbackrest_config = "/etc/pgbackrest/pgbackrest.conf"  # PostgreSQL: pgBackRest's own file
    stanza = "voltbook"          # its stanza (default voltbook)
    run_as = "postgres"          # the user pgBackRest runs as when we are root (default postgres)

    [payments]                   # merchants paying on their phones (none without this table)
    notify_base = "https://pay.example.com"   # our public URL the providers notify
    order_ttl_s = 1800           # an unpaid order closes after this (default 1800 s)
    [payments.wechat]            # WeChat Pay API v3 (or the sandbox's)
    api_base = "https://api.mch.weixin.qq.com"
    mchid = "1900000001"
    appid = "wx0000000000000001"
    apiv3_key_file = "pay/apiv3.key"
    merchant_key = "pay/apiclient_key.pem"
    merchant_serial = "5157F09EFDC096DE15EBE81A47057A72"
    [payments.wechat.platform_keys]          # serial (or PUB_KEY_ID_…) → certificate or key
    "PUB_KEY_ID_0114232134912410000000000001" = "pay/wechatpay_pub.pem"
    [payments.alipay]            # Alipay open API, RSA2 (or the sandbox's)
    gateway = "https://openapi.alipay.com/gateway.do"
    app_id = "2021000000000001"
    seller_id = "2088000000000001"
    app_private_key = "pay/alipay_app_key.pem"
    alipay_public_key = "pay/alipay_public.pem"
    [metrics]                    # GET /metrics for Prometheus (`cloud.metrics`); none without it
    token_file = "metrics-token" # the bearer token Prometheus sends: one line, 16+ characters
    restore_drill = "restore-drill.json"  # the restore drill's result (default: in the data dir)

    [notices]                    # notices to merchants (`cloud.notices`); none without it
    low_balance_at = "09:00"     # the daily low-balance round, in the site's zone
    low_balance_days = 3         # low: this many days of credit left or fewer (or the site's rule)
    arrears_warn_before = 120    # minutes before a scheduled cut-off that its warning goes out
    zone = "Asia/Shanghai"       # the zone of accounts the registry places on no site
    every = 60                   # seconds between rounds of the planner and the sender
    [notices.wechat_oa]          # WeChat Official Account template messages
    api_base = "https://api.weixin.qq.com"
    appid = "wx0123456789abcdef"
    secret_file = "wechat-oa-secret"     # the AppSecret, one line
    page_url = "https://pay.example/m/"  # where a message leads (optional)
    [notices.wechat_oa.templates]        # template id per notice kind (a kind without: SMS)
    low_balance = "TEMPLATE-ID"
    [notices.sms]                # one of: a gateway taking {"phone", "text"} as JSON …
    url = "http://127.0.0.1:9000/sms"
    # file = "sms-outbox.jsonl"  # … or a file the messages are appended to (the demo)

Relative paths (and a relative SQLite file) are relative to the file's directory. The data
directory, where the defaults live (`voltbook-cloud.db`, `cloud-key.pem`, the embedded
broker's files), is the file's directory, or `--data-dir`. Without any file everything takes
its default in `./voltbook-data`.

A problem is a `ConfigError` naming the file and the key: unknown keys, wrong types and a
missing or corrupt file are refused before anything is started.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL

from cloud.database_url import parse_database_url
from cloud.errors import CloudError

DEFAULT_DATA_DIR = Path("voltbook-data")
DATABASE_FILE = "voltbook-cloud.db"
KEY_FILE = "cloud-key.pem"
OPLOG_HEADS_FILE = "oplog-heads.jsonl"
RESTORE_DRILL_FILE = "restore-drill.json"  # `cloud.metrics.restore_drill`: the drill's result
MIN_METRICS_TOKEN = 16
MAX_METRICS_TOKEN = 256
BACKUP_DIR = "backups"
PASSPHRASE_ENV = "VOLTBOOK_BACKUP_PASSPHRASE"
DEFAULT_SIGN_EVERY_S = 300
MAX_SIGN_EVERY_S = 86_400
BROKER_DIR = "broker"
PKI_DIR = "pki"
LOOPBACK = "127.0.0.1"
BROKER_NAMES = ("localhost", LOOPBACK)
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8080
MQTT_PORT = 1883
MQTTS_PORT = 8883
MAX_WORKERS = 64
MAX_PARTITIONS = 1024
APPROVE_ABOVE_FEN = 100_000  # 1 000 yuan: a larger correction needs a second user
# A node heard from no longer than this ago counts on line (`cloud.db.presence`): three polling
# cycles at the edge's default 15 minutes.
SILENT_AFTER_MIN = 45
MAX_SILENT_AFTER_MIN = 7 * 24 * 60
MAX_APPROVE_FEN = 10_000_000  # the largest correction there is (a recharge's maximum)
DEFAULT_ORDER_TTL_S = 1800  # an unpaid payment order closes after half an hour
MAX_ORDER_TTL_S = 7 * 86_400
# `cloud.notices.outbox.NoticeKind`, which a test holds this to (config sits below notices).
NOTICE_KINDS = ("low_balance", "arrears_warning", "cut_off", "recharge_credited", "refund_paid",
                "power_off")  # fmt: skip
DEFAULT_ZONE = "Asia/Shanghai"
WECHAT_API = "https://api.weixin.qq.com"
CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class ConfigError(CloudError):
    """The configuration cannot be used; nothing was started. Names the file and the key."""

    def __init__(self, path: Path | None, problem: str) -> None:
        where = "the default configuration" if path is None else f"the configuration {path}"
        super().__init__(f"cannot use {where}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The cloud's MQTT client credentials: the CA to trust, its certificate and key (PEM)."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """An external broker (`host`, `port`, `tls`), or `embedded`: Mosquitto with TLS on
    `listen`:`port` (None: any free port), a certificate for `names`, and a plain loopback
    listener on `plain_port` for the demo (None: none; 0: any free port)."""

    embedded: bool
    host: str
    port: int | None
    tls: TlsSettings | None
    listen: str = LOOPBACK
    names: tuple[str, ...] = BROKER_NAMES
    plain_port: int | None = None

    @property
    def ip_addresses(self) -> list[str]:
        return [name for name in self.names if _is_ip(name)]

    @property
    def dns_names(self) -> list[str]:
        return [name for name in self.names if not _is_ip(name)]


@dataclass(frozen=True, slots=True)
class ProvisionSettings:
    """`[provision]`: the broker address `POST /provision` hands a claimed concentrator, where
    the broker's own settings do not name it (a NAT, a load balancer); None: from `[broker]`."""

    broker_host: str | None = None
    broker_port: int | None = None


@dataclass(frozen=True, slots=True)
class IngestRouting:
    """How each node's uplink reaches exactly one ingest worker (`cloud.ingest.routing`)."""

    partitions: int | None = None  # of the whole cloud; None: this server's workers
    partition: int = 0  # this server's first; its workers take partition … + workers − 1
    broker: bool = False  # a `$share` group instead; the broker routes by node (EMQX)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str
    port: int  # 0: any free port (tests)
    workers: int = 1  # processes serving the API on that port (`cloud.server`)
    # Addresses or networks whose X-Forwarded-For names the client (`cloud.api.guards`).
    trusted_proxies: tuple[str, ...] = ()
    tls: ApiTls | None = None  # HTTPS served by the cloud itself (None: plain HTTP)
    tls_proxy: bool = False  # a trusted proxy terminates TLS (`cloud.api.transport`)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ApiTls:
    """`[api] tls_cert` and `tls_key`: the API's certificate (with its chain) and key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class WechatPaySettings:
    """`[payments.wechat]`: the merchant account at WeChat Pay and its keys' files."""

    api_base: str
    mchid: str
    appid: str
    apiv3_key_file: Path
    merchant_key: Path
    merchant_serial: str
    platform_keys: tuple[tuple[str, Path], ...]  # serial → platform certificate or public key


@dataclass(frozen=True, slots=True)
class AlipaySettings:
    """`[payments.alipay]`: the app at Alipay and its keys' files."""

    gateway: str
    app_id: str
    seller_id: str
    app_private_key: Path
    alipay_public_key: Path


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    """`[payments]`: where the providers notify us, how long an order waits, the providers."""

    notify_base: str
    order_ttl_s: int = DEFAULT_ORDER_TTL_S
    wechat: WechatPaySettings | None = None
    alipay: AlipaySettings | None = None


@dataclass(frozen=True, slots=True)
class WechatOaSettings:
    """A WeChat Official Account: where its API is (the real one, or the stand-in), its appid,
    the file holding its AppSecret, the template id per notice kind, and the page a message
    opens (`url` of a template message; None: none)."""

    api_base: str
    appid: str
    secret_file: Path
    templates: Mapping[str, str] = field(default_factory=dict)
    page_url: str | None = None

    def secret(self) -> str:
        """The AppSecret, read when needed (never kept in the configuration)."""
        return self.secret_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """Where text messages go: an HTTP gateway (`url`) or a file (`file`), exactly one."""

    url: str | None = None
    file: Path | None = None


@dataclass(frozen=True, slots=True)
class NoticesSettings:
    """`[notices]`: when the planner warns, and the channels the sender uses."""

    low_balance_at: dt.time = dt.time(9, 0)
    low_balance_days: int = 3
    arrears_warn_before: dt.timedelta = dt.timedelta(hours=2)
    zone: str = DEFAULT_ZONE
    every: float = 60.0
    wechat_oa: WechatOaSettings | None = None
    sms: SmsSettings | None = None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """`[metrics]`: `GET /metrics` is served, to callers sending the token of `token_file`."""

    token_file: Path

    def token(self) -> str:
        """The token, read when the app is made (never kept in the configuration)."""
        return self.token_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """`[backup]`: where backups go and how they are sealed (`cloud.backups`)."""

    repository: Path | None = None  # None: backups/ in the data directory
    key_file: Path | None = None
    passphrase_env: str = PASSPHRASE_ENV
    pgbackrest_config: Path | None = None
    stanza: str = "voltbook"
    run_as: str = "postgres"


@dataclass(frozen=True, slots=True)
class CloudConfig:
    path: Path | None  # the file it came from; None for the defaults
    data_dir: Path
    database_url: str
    broker: BrokerSettings
    api: ApiSettings
    cloud_key: Path
    ingest_workers: int
    ingest_routing: IngestRouting = IngestRouting()
    silent_after: dt.timedelta = dt.timedelta(minutes=SILENT_AFTER_MIN)  # then a node is silent
    approve_above_fen: int = APPROVE_ABOVE_FEN  # corrections above: four eyes
    oplog_heads_file: Path | None = None  # the signed heads; None: in the data directory
    oplog_sign_every: int = DEFAULT_SIGN_EVERY_S
    payments: PaymentSettings | None = None  # no online payments without `[payments]`
    notices: NoticesSettings | None = None  # None: no notices are made or sent
    provision: ProvisionSettings = ProvisionSettings()
    update_bundles: Path | None = None  # `[updates] bundles`: the folder of served bundles
    metrics: MetricsSettings | None = None  # None: no /metrics
    restore_drill_file: Path | None = None  # `[metrics] restore_drill`; None: in the data dir
    backup: BackupSettings = BackupSettings()

    @property
    def restore_drill(self) -> Path:
        """The restore drill's result file (`cloud.metrics.restore_drill`: the drill writes it,
        `/metrics` reads it)."""
        return self.restore_drill_file or self.data_dir / RESTORE_DRILL_FILE

    @property
    def backup_repository(self) -> Path:
        """Where sealed SQLite backups are written (`[backup] repository`)."""
        return self.backup.repository or self.data_dir / BACKUP_DIR

    @property
    def oplog_heads(self) -> Path:
        """The file of the operator log's signed heads (`cloud.people.oplog_heads`)."""
        return self.oplog_heads_file or self.data_dir / OPLOG_HEADS_FILE

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / BROKER_DIR

    @property
    def pki_dir(self) -> Path:
        """The embedded broker's CA (`ca.crt`, `ca.key`), which device certificates chain to."""
        return self.data_dir / PKI_DIR

    @property
    def database_shown(self) -> str:
        """The database URL safe to log: the password hidden."""
        return parse_database_url(self.database_url).render_as_string(hide_password=True)


class _Table:
    """One TOML table being read: typed getters that name `[table] key` in their errors, and
    `done()` that refuses whatever key nobody asked for."""

    def __init__(self, path: Path | None, name: str, raw: object) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(path, f"[{name}] must be a table, not {_kind(raw)}")
        self.path, self.name, self.raw = path, name, raw
        self.seen: set[str] = set()

    def problem(self, key: str, expected: str, value: object) -> ConfigError:
        return ConfigError(
            self.path, f"[{self.name}] {key} must be {expected}, not {_kind(value)} {value!r}"
        )

    def get(self, key: str) -> object:
        self.seen.add(key)
        return self.raw.get(key)

    def text(self, key: str, default: str) -> str:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.problem(key, "a non-empty string", value)
        return value

    def integer(self, key: str, default: int | None, low: int, high: int) -> int | None:
        value = self.get(key)
        if value is None:
            return default
        if type(value) is not int or not low <= value <= high:
            raise self.problem(key, f"an integer from {low} to {high}", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if type(value) is not bool:
            raise self.problem(key, "true or false", value)
        return value

    def table(self, key: str) -> _Table | None:
        value = self.get(key)
        name = f"{self.name}.{key}" if self.name else key  # the top table has no name
        return None if value is None else _Table(self.path, name, value)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            keys = ", ".join(unknown)
            known = ", ".join(sorted(self.seen)) or "none"
            prefix = f"[{self.name}] " if self.name else ""
            raise ConfigError(self.path, f"unknown key {prefix}{keys} (known here: {known})")


def _ingest_routing(ingest: _Table, workers: int) -> IngestRouting:
    """`[ingest] partitions`, `partition` and `routing`; every partition has a worker here
    or, by the operator's word (`partitions` beyond this server's), in another server."""
    partitions = ingest.integer("partitions", None, 1, MAX_PARTITIONS)
    partition = ingest.integer("partition", None, 0, MAX_PARTITIONS - 1)
    routing = ingest.text("routing", "partitions")
    if routing not in ("partitions", "broker"):
        raise ingest.problem("routing", '"partitions" or "broker"', routing)
    if routing == "broker":
        if partitions is not None or partition is not None:
            raise ConfigError(ingest.path, '[ingest] routing = "broker" leaves the routing to '
                              "the broker: no partitions or partition")  # fmt: skip
        return IngestRouting(broker=True)
    first = partition or 0
    if first + workers > (partitions or workers):
        raise ConfigError(
            ingest.path,
            f"[ingest] partition {first} + workers {workers} must be at most partitions "
            f"{partitions or workers} (default: workers): this server's workers take partition "
            f"{first} to {first + workers - 1}",
        )
    return IngestRouting(partitions, first)


# What a TOML value is, in words (with its article): every type `tomllib` gives.
_KINDS: dict[type, str] = {
    dict: "a table",
    list: "an array",
    bool: "a boolean",
    str: "a string",
    int: "an integer",
    float: "a float",
    dt.datetime: "a date-time",
    dt.date: "a date",
    dt.time: "a time",
}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, "the file does not exist") from None
    except OSError as exc:
        raise ConfigError(path, f"the file cannot be read ({exc.strerror})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, "the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML ({exc})") from None


def load_config(path: Path | None = None, data_dir: Path | None = None) -> CloudConfig:
    """The configuration in `path` (every key optional), or the defaults when `path` is None."""
    if path is None:
        return parse_config(None, {}, data_dir or DEFAULT_DATA_DIR)
    path = path.absolute()
    return parse_config(path, read_toml(path), data_dir or path.parent)


def parse_config(path: Path | None, data: dict[str, Any], data_dir: Path) -> CloudConfig:
    data_dir = data_dir.absolute()
    base = data_dir if path is None else path.parent
    top = _Table(path, "", data)
    database = _Table(path, "database", top.get("database"))
    url = _database_url(database, base, data_dir)
    database.done()
    broker = _broker(_Table(path, "broker", top.get("broker")), base)
    api = _Table(path, "api", top.get("api"))
    api_settings = ApiSettings(
        host=api.text("host", DEFAULT_API_HOST),
        port=api.integer("port", DEFAULT_API_PORT, 0, 65535) or 0,
        workers=api.integer("workers", 1, 1, MAX_WORKERS) or 1,
        trusted_proxies=_proxies(api),
        tls=_api_tls(api, base),
        tls_proxy=api.boolean("tls_proxy", False),
    )
    api.done()
    if api_settings.tls_proxy and not api_settings.trusted_proxies:
        raise ConfigError(
            path, "[api] tls_proxy = true needs [api] trusted_proxies: the proxy's address"
        )
    keys = _Table(path, "keys", top.get("keys"))
    cloud_key = keys.text("cloud", "")
    keys.done()
    ingest = _Table(path, "ingest", top.get("ingest"))
    workers = ingest.integer("workers", 1, 1, MAX_WORKERS) or 1
    routing = _ingest_routing(ingest, workers)
    silent = ingest.integer("silent_after_min", SILENT_AFTER_MIN, 1, MAX_SILENT_AFTER_MIN)
    ingest.done()
    operations = _Table(path, "operations", top.get("operations"))
    approve = operations.integer(
        "approve_corrections_above_fen", APPROVE_ABOVE_FEN, 0, MAX_APPROVE_FEN
    )
    operations.done()
    oplog = _Table(path, "oplog", top.get("oplog"))
    heads = oplog.text("heads", "")
    sign_every = oplog.integer("sign_every", DEFAULT_SIGN_EVERY_S, 1, MAX_SIGN_EVERY_S)
    oplog.done()
    payments = _payments(top.table("payments"), base)
    provision = _Table(path, "provision", top.get("provision"))
    provision_settings = ProvisionSettings(
        broker_host=_host(provision, "broker_host"),
        broker_port=provision.integer("broker_port", None, 1, 65535),
    )
    provision.done()
    updates_table = _Table(path, "updates", top.get("updates"))
    bundles = updates_table.text("bundles", "")
    updates_table.done()
    raw_metrics = top.get("metrics")
    metrics, restore_drill = _metrics(
        None if raw_metrics is None else _Table(path, "metrics", raw_metrics), base
    )
    backup = _backup(_Table(path, "backup", top.get("backup")), base)
    raw_notices = top.get("notices")
    notices = None if raw_notices is None else _notices(_Table(path, "notices", raw_notices), base)
    top.done()
    return CloudConfig(
        path=path,
        data_dir=data_dir,
        database_url=url,
        broker=broker,
        api=api_settings,
        cloud_key=base / cloud_key if cloud_key else data_dir / KEY_FILE,
        ingest_workers=workers,
        ingest_routing=routing,
        silent_after=dt.timedelta(minutes=silent or SILENT_AFTER_MIN),
        approve_above_fen=APPROVE_ABOVE_FEN if approve is None else approve,
        oplog_heads_file=base / heads if heads else None,
        update_bundles=base / bundles if bundles else None,
        oplog_sign_every=sign_every or DEFAULT_SIGN_EVERY_S,
        payments=payments,
        notices=notices,
        provision=provision_settings,
        metrics=metrics,
        restore_drill_file=restore_drill,
        backup=backup,
    )


def _backup(table: _Table, base: Path) -> BackupSettings:
    repository = table.text("repository", "")
    key_file = table.text("key_file", "")
    passphrase_env = table.text("passphrase_env", PASSPHRASE_ENV)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", passphrase_env):
        raise table.problem("passphrase_env", "an environment variable's name", passphrase_env)
    pgbackrest = table.text("pgbackrest_config", "")
    stanza = table.text("stanza", "voltbook")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stanza):
        raise table.problem("stanza", "a stanza name (letters, digits, _ and -)", stanza)
    run_as = table.text("run_as", "postgres")
    table.done()
    return BackupSettings(
        repository=base / repository if repository else None,
        key_file=base / key_file if key_file else None,
        passphrase_env=passphrase_env,
        pgbackrest_config=base / pgbackrest if pgbackrest else None,
        stanza=stanza,
        run_as=run_as,
    )


def _metrics(table: _Table | None, base: Path) -> tuple[MetricsSettings | None, Path | None]:
    """`[metrics]`: the token file (required: no unauthenticated /metrics) and the drill's file."""
    if table is None:
        return None, None
    drill = table.text("restore_drill", "")
    value = table.get("token_file")
    if not isinstance(value, str) or not value.strip():
        raise table.problem("token_file", "the path of a file holding the metrics token", value)
    token_file = base / value
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(table.path, f"[metrics] token_file: {token_file} cannot be read "
                          f"({getattr(exc, 'strerror', None) or exc})") from None  # fmt: skip
    if not MIN_METRICS_TOKEN <= len(token) <= MAX_METRICS_TOKEN or not all(
        "!" <= c <= "~" for c in token
    ):
        raise ConfigError(
            table.path,
            f"[metrics] token_file: {token_file} must hold one token of {MIN_METRICS_TOKEN} to "
            f"{MAX_METRICS_TOKEN} printable ASCII characters, no spaces (e.g. the output of "
            "`openssl rand -hex 32`)",
        )
    table.done()
    return MetricsSettings(token_file), base / drill if drill else None


def _host(table: _Table, key: str) -> str | None:
    """A host name or IP address a concentrator can connect to (None when not given)."""
    value = table.get(key)
    if value is None:
        return None
    expected = "a host name or IP address"
    if not isinstance(value, str) or not value.strip():
        raise table.problem(key, expected, value)
    if _is_ip(value) and ipaddress.ip_address(value).is_unspecified:
        raise table.problem(key, "an address a concentrator can reach (not 0.0.0.0)", value)
    if not _is_ip(value) and not all(
        part and part.replace("-", "").isalnum() and part.isascii() for part in value.split(".")
    ):
        raise table.problem(key, expected, value)
    return value


def _payments(table: _Table | None, base: Path) -> PaymentSettings | None:
    if table is None:
        return None
    notify_base = _url(table, "notify_base")
    ttl = table.integer("order_ttl_s", DEFAULT_ORDER_TTL_S, 60, MAX_ORDER_TTL_S)
    wechat = table.table("wechat")
    alipay = table.table("alipay")
    settings = PaymentSettings(
        notify_base=notify_base.rstrip("/"),
        order_ttl_s=ttl or DEFAULT_ORDER_TTL_S,
        wechat=None if wechat is None else _wechat(wechat, base),
        alipay=None if alipay is None else _alipay(alipay, base),
    )
    table.done()
    if settings.wechat is None and settings.alipay is None:
        raise ConfigError(table.path, "[payments] needs [payments.wechat] or [payments.alipay]")
    return settings


def _wechat(table: _Table, base: Path) -> WechatPaySettings:
    keys = table.table("platform_keys")
    if keys is None or not keys.raw:
        raise ConfigError(
            table.path,
            "[payments.wechat] needs [payments.wechat.platform_keys]: serial = the WeChat Pay "
            "platform certificate or public key (PEM)",
        )
    platform = tuple((serial, _existing(keys, serial, base)) for serial in sorted(keys.raw))
    keys.done()
    settings = WechatPaySettings(
        api_base=_url(table, "api_base").rstrip("/"),
        mchid=_required(table, "mchid"),
        appid=_required(table, "appid"),
        apiv3_key_file=_existing(table, "apiv3_key_file", base),
        merchant_key=_existing(table, "merchant_key", base),
        merchant_serial=_required(table, "merchant_serial"),
        platform_keys=platform,
    )
    table.done()
    return settings


def _alipay(table: _Table, base: Path) -> AlipaySettings:
    settings = AlipaySettings(
        gateway=_url(table, "gateway"),
        app_id=_required(table, "app_id"),
        seller_id=_required(table, "seller_id"),
        app_private_key=_existing(table, "app_private_key", base),
        alipay_public_key=_existing(table, "alipay_public_key", base),
    )
    table.done()
    return settings


def _required(table: _Table, key: str) -> str:
    value = table.text(key, "")
    if not value:
        raise ConfigError(table.path, f"[{table.name}] {key} is required")
    return value


def _url(table: _Table, key: str) -> str:
    value = _required(table, key)
    if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
        raise table.problem(key, "an http(s):// URL", value)
    return value


def _notices(table: _Table, base: Path) -> NoticesSettings:
    at = table.text("low_balance_at", "09:00")
    if not CLOCK_TIME.match(at):
        raise table.problem("low_balance_at", 'a time of day "HH:MM"', at)
    zone = table.text("zone", DEFAULT_ZONE)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.problem("zone", "an IANA time zone such as Asia/Shanghai", zone) from None
    days = table.integer("low_balance_days", 3, 0, 365)
    before = table.integer("arrears_warn_before", 120, 1, 24 * 60)
    every = table.integer("every", 60, 1, 3600)
    wechat = _wechat_oa(table.table("wechat_oa"), base)
    sms = _sms(table.table("sms"), base)
    table.done()
    return NoticesSettings(
        low_balance_at=dt.time.fromisoformat(at),
        low_balance_days=3 if days is None else days,
        arrears_warn_before=dt.timedelta(minutes=before or 120),
        zone=zone,
        every=float(every or 60),
        wechat_oa=wechat,
        sms=sms,
    )


def _http_url(table: _Table, key: str, default: str | None) -> str | None:
    value = table.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise table.problem(key, "an http:// or https:// URL", value)
    return value.rstrip("/") if key == "api_base" else value


def _wechat_oa(table: _Table | None, base: Path) -> WechatOaSettings | None:
    if table is None:
        return None
    api_base = _http_url(table, "api_base", WECHAT_API) or WECHAT_API
    appid = table.get("appid")
    if not isinstance(appid, str) or not re.match(r"^[A-Za-z0-9_]{1,64}$", appid):
        raise table.problem("appid", "the Official Account's appid (letters and digits)", appid)
    secret = table.get("secret_file")
    if not isinstance(secret, str) or not secret.strip():
        raise table.problem("secret_file", "the path of a file holding the AppSecret", secret)
    secret_file = base / secret
    if not secret_file.is_file():
        raise ConfigError(table.path, f"[{table.name}] secret_file: {secret_file} does not exist")
    page_url = _http_url(table, "page_url", None)
    templates: dict[str, str] = {}
    ids = table.table("templates")
    if ids is not None:
        for kind in NOTICE_KINDS:
            template = ids.get(kind)
            if template is None:
                continue
            if not isinstance(template, str) or not re.match(r"^[A-Za-z0-9_\-]{1,128}$", template):
                raise ids.problem(kind, "a template id", template)
            templates[kind] = template
        ids.done()
    table.done()
    return WechatOaSettings(api_base, appid, secret_file, templates, page_url)


def _sms(table: _Table | None, base: Path) -> SmsSettings | None:
    if table is None:
        return None
    url = _http_url(table, "url", None)
    file = table.text("file", "")
    table.done()
    if (url is None) == (not file):
        raise ConfigError(
            table.path, f"[{table.name}] needs exactly one of url (a gateway) and file"
        )
    return SmsSettings(url=url, file=base / file if file else None)


def _api_tls(table: _Table, base: Path) -> ApiTls | None:
    given = {key: table.get(key) for key in ("tls_cert", "tls_key")}
    if all(value is None for value in given.values()):
        return None
    if any(value is None for value in given.values()):
        raise ConfigError(table.path, "[api] tls_cert and tls_key go together: both or none")
    return ApiTls(cert=_existing(table, "tls_cert", base), key=_existing(table, "tls_key", base))


def _proxies(table: _Table) -> tuple[str, ...]:
    value = table.get("trusted_proxies")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise table.problem("trusted_proxies", "a list of addresses or networks", value)
    for entry in value:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise table.problem("trusted_proxies", "addresses or networks", entry) from None
    return tuple(value)


def _database_url(table: _Table, base: Path, data_dir: Path) -> str:
    text = table.text("url", "")
    if not text:
        return URL.create("sqlite", database=str(data_dir / DATABASE_FILE)).render_as_string()
    try:
        url = parse_database_url(text)  # also libpq's multi-host form (README "Hot standby")
    except ValueError:
        raise table.problem(
            "url", "a database URL such as postgresql+psycopg://user@host/db", text
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise table.problem("url", "a sqlite:/// or postgresql+psycopg:// URL", text)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database or "")
        if not database.is_absolute():
            url = url.set(database=str(base / database))
    return url.render_as_string(hide_password=False)


def _broker(table: _Table, base: Path) -> BrokerSettings:
    host = table.text("host", "")
    embedded = table.boolean("embedded", not host)
    if embedded and host:
        raise ConfigError(
            table.path, "[broker] has both embedded = true and host: choose one of the two"
        )
    if not embedded and not host:
        raise ConfigError(table.path, "[broker] embedded = false needs the broker's host")
    tls_table = table.table("tls")
    tls = None
    if tls_table is not None:
        tls = TlsSettings(*(_existing(tls_table, key, base) for key in ("ca", "cert", "key")))
        tls_table.done()
        if embedded:
            raise ConfigError(
                table.path,
                "[broker.tls] is for an external broker; the embedded one makes its own CA and "
                "certificates in the data directory (pki/)",
            )
    port = table.integer("port", None if embedded else (MQTTS_PORT if tls else MQTT_PORT), 1, 65535)
    listen = table.text("listen", LOOPBACK)
    names = _names(table)
    plain_port = table.integer("plain_port", None, 0, 65535)
    if not embedded and {"listen", "names", "plain_port"} & set(table.raw):
        raise ConfigError(
            table.path, "[broker] listen, names and plain_port are for the embedded broker"
        )
    _address(table, "listen", listen)
    table.done()
    return BrokerSettings(
        embedded=embedded,
        host=host or LOOPBACK,
        port=port,
        tls=tls,
        listen=listen,
        names=names,
        plain_port=plain_port,
    )


def _names(table: _Table) -> tuple[str, ...]:
    value = table.get("names")
    if value is None:
        return BROKER_NAMES
    expected = "an array of host names or IP addresses"
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise table.problem("names", expected, value)
    for name in value:
        if not _is_ip(name) and not all(
            part and part.replace("-", "").isalnum() for part in name.split(".")
        ):
            raise table.problem("names", expected, value)
    return tuple(dict.fromkeys([*BROKER_NAMES, *value]))


def _address(table: _Table, key: str, value: str) -> None:
    if not _is_ip(value):
        raise table.problem(key, "an IP address to listen on (0.0.0.0 for all)", value)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _existing(table: _Table, key: str, base: Path) -> Path:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise table.problem(key, "the path of a PEM file", value)
    path = base / value
    if not path.is_file():
        raise ConfigError(table.path, f"[{table.name}] {key}: {path} does not exist")
    return path


TEMPLATE = """\
# Voltbook cloud server configuration (voltbook-cloud serve --config {name}).
# Every key is optional; relative paths are relative to this file's directory.

[database]
# SQLAlchemy URL. Default: SQLite file voltbook-cloud.db next to this file.
# PostgreSQL in production, e.g.:
# url = "postgresql+psycopg://voltbook:secret@127.0.0.1:5432/voltbook"

[broker]
# The MQTT broker the concentrators sync through. `embedded = true` starts Mosquitto in this
# directory with its own CA in pki/ (device certificates: voltbook-cloud device-cert NODE).
# Devices connect with TLS client certificates; each one's client id is its certificate's CN
# (its node id), and it may only use its own topics vb/<node>/...
embedded = true
# listen = "0.0.0.0"           # the devices listener's address (default 127.0.0.1)
# port = 8883                  # default: any free port
# names = ["mqtt.example.com"] # the names devices use for this host (+ localhost, 127.0.0.1)
# plain_port = 1883            # demo only: plain MQTT, anonymous, 127.0.0.1 only
# For an external broker instead, remove `embedded` and set:
# host = "mqtt.example.com"
# port = 8883
# [broker.tls]          # the cloud's client certificate (CN "cloud"), all three PEM files
# ca = "pki/ca.crt"
# cert = "pki/cloud.crt"
# key = "pki/cloud.key"

[api]
# Where the HTTP API listens (OpenAPI documentation at /docs).
host = "127.0.0.1"
port = 8080
# Processes answering the API on that port; more use more CPU cores (about one per core).
workers = 1
# HTTPS: the certificate (with its chain) and key, PEM. The key may be encrypted with the key
# passphrase (systemd credential voltbook-key-passphrase, $VOLTBOOK_KEY_PASSPHRASE_FILE or
# $VOLTBOOK_KEY_PASSPHRASE). Every answer over TLS carries Strict-Transport-Security.
# tls_cert = "tls/api.crt"
# tls_key = "tls/api.key"
# Or behind a TLS reverse proxy (README "TLS and key rotation", docs/deploy/nginx-voltbook.conf):
# trusted_proxies = ["127.0.0.1"]
# tls_proxy = true             # its X-Forwarded-Proto: https is believed (HSTS, Secure cookies)

[keys]
# The cloud's Ed25519 signing key (commands, acknowledgements); created if missing.
# Concentrators trust its public key: `voltbook-cloud key --config {name}` prints it.
cloud = "{key}"

[provision]
# What `POST /provision` (a concentrator redeeming an installer's claim token) is told about the
# broker. Default: the first of [broker] names beyond localhost (else its host) and its port.
# broker_host = "mqtt.example.com"
# broker_port = 8883

[ingest]
# Ingest workers in the server process (about one per core). Each takes the nodes of one
# partition (a hash of the node id), so a node's batches are handled by one worker, in order.
workers = 1
# Several servers on one broker: `partitions` of them all, and this server's first; its workers
# take partition … partition + workers - 1. Give every partition a worker in some server.
# partitions = 4
# partition = 0
# Or a broker that routes each node to one member of a shared subscription (EMQX with
# broker.shared_subscription_strategy = hash_clientid): one `$share/ingest` group, no partitions.
# routing = "broker"
# Minutes without a batch or status after which a node whose status says online counts offline
# (silent): on the console, in /metrics. Keep it a few of the sites' poll_interval_s.
silent_after_min = 45

[operations]
# A correction of more fen than this waits for a second user (finance or admin) to approve it.
approve_corrections_above_fen = 100000

# Prometheus metrics at GET /metrics (none without this table). Prometheus sends the token as
# `Authorization: Bearer …` (its scrape setting `authorization: {{credentials_file: …}}`).
# [metrics]
# token_file = "metrics-token"          # one line: `openssl rand -hex 32 > metrics-token`
# restore_drill = "restore-drill.json"  # the restore drill's last result (default: here)

[backup]
# `voltbook-cloud backup create|list|restore|verify|drill`. SQLite: sealed files (AES-256-GCM)
# in `repository` (default backups/ here), keyed by `key_file` (`voltbook-cloud backup key
# --out FILE` makes one; keep it off this machine's backup media) or by a passphrase in the
# environment variable `passphrase_env`. PostgreSQL: pgBackRest with its own configuration.
# repository = "backups"
# key_file = "/etc/voltbook/backup.key"
# passphrase_env = "VOLTBOOK_BACKUP_PASSPHRASE"
# pgbackrest_config = "/etc/pgbackrest/pgbackrest.conf"
# stanza = "voltbook"

# Notices to merchants (low balance, arrears warning, cut-off, recharge credited, refund paid,
# power-off). Without a [notices] table none are made. The WeChat Official Account is tried
# first (merchants bound to an openid), then SMS (the merchant's phone).
# [notices]
# low_balance_at = "09:00"     # the daily low-balance round, in the site's time zone
# low_balance_days = 3         # warn with this many days of credit left or fewer
# arrears_warn_before = 120    # minutes before a scheduled cut-off to warn
# [notices.wechat_oa]
# api_base = "https://api.weixin.qq.com"
# appid = "wx0123456789abcdef"
# secret_file = "wechat-oa-secret"      # the AppSecret, one line
# page_url = "https://pay.example/m/"   # where a message leads
# [notices.wechat_oa.templates]         # the template id per kind (a kind without: SMS only)
# low_balance = "…"
# arrears_warning = "…"
# cut_off = "…"
# recharge_credited = "…"
# refund_paid = "…"
# power_off = "…"
# [notices.sms]
# url = "http://127.0.0.1:9000/sms"     # a gateway taking JSON with phone and text; or
# file = "sms-outbox.jsonl"             # messages appended to a file (the demo)
"""
