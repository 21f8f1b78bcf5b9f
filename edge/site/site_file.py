"""`site.toml`: what an installer edits on the concentrator.

[site]
node = "edge-0001"              # the concentrator's node id (its ledger chain's name)
name = "East Gate Market"
zone = "Asia/Shanghai"          # default Asia/Shanghai
data_dir = "data"               # the store (SQLite); paths are relative to this file
config = "config.json"          # the configuration documents (tinydb)
node_key = "node.key"           # Ed25519 private key (PEM) that signs checkpoints
seed = "seed.json"              # optional: opening balances, booked once at first run
poll_interval_s = 900
checkpoint_interval_s = 3600
prune_interval_s = 86400
keep_readings_days = 62
keep_events_days = 400
keep_synced_days = 2            # what the cloud acknowledged (entries, readings) stays this long
store_limit_mb = 512            # optional cap on the store file (DiskFull before the card)
read_success_min = 0.9          # alarm a bus that reads fewer of its meters in a round (0..1)
backup_dir = "/mnt/backup"      # optional: copy the store to a second medium (edge.store.backup)
backup_interval_s = 3600        # how often (default 3600, at least 60)

[simulation]                    # only with simulated buses
state_dir = "sim"               # the simulated meters' registers, relays and clock
start = "2026-11-01T00:00:00+08:00"
seed = 7

[cloud]                         # optional: sync with the cloud over MQTT (edge.sync)
host = "mqtt.example.cn"
port = 8883                     # default 8883 with TLS, 1883 without
ca = "tls/ca.crt"               # TLS: all three, or none for plain TCP (tests, a local demo)
cert = "tls/edge-0001.crt"      # the concentrator's client certificate (CN = node id)
key = "tls/edge-0001.key"       # encrypted with the key passphrase, or plain (a warning)
cloud_public_key = "cloud.pub"  # Ed25519: a file, PEM text or 64 hex digits; or a list of them
keepalive_s = 60
batch_bytes = 32768             # compressed bytes per uplink batch, at most
batch_items = 2000              # outbox items per batch, at most
window = 4                      # batches in flight without an acknowledgement
ack_timeout_s = 60              # resend from the last acknowledged item after this
rate_bytes_s = 4096             # uplink pacing for a catch-up (0: unpaced)
priority_alarms = 16            # newest alarms sent ahead of a backlog, per batch
tick_s = 0.5                    # how often the runtime thread handles the link

[[buses]]
name = "rs485-1"
kind = "serial"                 # serial | simulated | lora
protocol = "dlt645"
port = "/dev/ttyUSB0"           # serial only
baud = 2400                     # default: the protocol's
parity = "E"
# frequency_hz, spreading_factor, bandwidth_hz: lora (and simulated radio) buses only
# radio = "lora"                # simulated only: its meters answer over a simulated LoRa radio
password_level = "02"           # DL/T 645 only: credentials of writes (14) and relay commands
password = "000000"             #   (1C), hex digits as in the meter's documents; defaults shown
operator_code = "00000000"      #   dlt645 (2007) only
# relay = "voltbook-sim"        # Modbus: the meters' relay variant; meter_type, di_order: CJ/T 188
# blocks = "standard"           # DL/T 645: the block DIs the meters answer (dlt645_blocks.py)
# [buses.meter_options."3"]     # a meter whose options differ (edge/site/bus_options.py)

[metrics]                       # optional: Prometheus metrics of `run` (edge/metrics.py), off
listen = "127.0.0.1:9108"       #   without this table; no login: bind where Prometheus reaches

[[blocks]]                      # optional: reading blocks polled besides the billing read
name = "power"                  # (`edge.site.blocks`); a driver's own block needs no items
interval_s = 30                 # divides the day
# items = ["active_power_total", "power_factor_total"]
# protocols = ["dlt645"]        # default: every protocol the buses run
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from edge.drivers.errors import DriverUsageError
from edge.drivers.registry import protocol
from edge.site import node_pub
from edge.site.blocks import parse_blocks
from edge.site.bus_options import parse_meter_options, parse_options
from edge.site.errors import SiteConfigError
from edge.site.fields import Fields
from edge.site.model import (
    SIMULATED_RADIOS,
    BusConfig,
    BusKind,
    CloudSettings,
    SimulationSettings,
    SiteSettings,
    TlsFiles,
)
from ledger import key_files
from ledger.chain import load_public_key
from ledger.errors import DecodeError
from ledger.signed import trusted
from ledger.wire import MAX_BATCH_BYTES

ENCRYPT_HINT = "voltbook-edge keys encrypt --config site.toml"
DAY_S = 86_400


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SiteConfigError(path, "the file does not exist") from None
    except OSError as exc:
        raise SiteConfigError(path, f"the file cannot be read ({exc.strerror})") from None
    if not raw.strip():
        raise SiteConfigError(path, "the file is empty (a write cut short?)")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SiteConfigError(path, "the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(path, f"not valid TOML, perhaps truncated ({exc})") from None


def _zone(f: Fields) -> ZoneInfo:
    name = f.text("zone", "Asia/Shanghai")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise f.problem("zone", 'a time zone name like "Asia/Shanghai"', name) from None


def _fraction(f: Fields, name: str, default: float) -> float:
    value: float = f.number(name, default, low=0)
    if value > 1:
        raise f.problem(name, "a fraction from 0 to 1", value)
    return value


def parse_settings(path: Path, data: dict[str, Any]) -> SiteSettings:
    f = Fields(path, "[site]", data.get("site"))
    base = path.parent
    limit_mb = f.integer("store_limit_mb", None, low=1)
    seed = f.text("seed", None)
    backup = f.text("backup_dir", None)
    settings = SiteSettings(
        path=path,
        node=f.text("node"),
        name=f.text("name", ""),
        zone=_zone(f),
        data_dir=base / f.text("data_dir", "data"),
        config_path=base / f.text("config", "config.json"),
        node_key=base / f.text("node_key", "node.key"),
        seed_file=None if seed is None else base / seed,
        poll_interval=dt.timedelta(seconds=f.integer("poll_interval_s", 900, low=1, high=DAY_S)),
        checkpoint_interval=dt.timedelta(seconds=f.integer("checkpoint_interval_s", 3600, low=1)),
        prune_interval=dt.timedelta(seconds=f.integer("prune_interval_s", DAY_S, low=60)),
        keep_readings=dt.timedelta(days=f.integer("keep_readings_days", 62, low=1)),
        keep_events=dt.timedelta(days=f.integer("keep_events_days", 400, low=1)),
        keep_synced=dt.timedelta(days=f.integer("keep_synced_days", 2, low=1)),
        store_limit_bytes=None if limit_mb is None else limit_mb * 1024 * 1024,
        watchdog=f.boolean("watchdog", True),
        cloud=parse_cloud(path, data),
        read_success_min=_fraction(f, "read_success_min", 0.9),
        backup_dir=None if backup is None else base / backup,
        backup_interval=dt.timedelta(seconds=f.integer("backup_interval_s", 3600, low=60)),
    )
    if not (settings.node.isascii() and len(settings.node) < 256):
        raise f.problem("node", "1-255 ASCII characters", settings.node)
    if settings.cloud is not None and settings.cloud.tls is not None:
        _certificate_names_node(
            Fields(path, "[cloud]", data["cloud"]), settings.cloud.tls.cert, settings.node
        )
    _node_pub_apart(f, base, settings.node_key, data.get("cloud"))
    f.unknown()
    return settings


def _node_pub_apart(f: Fields, base: Path, node_key: Path, cloud: object) -> None:
    """The node key's public file (`node_pub.public_path`: `cloud.key` → `cloud.pub`) must not
    be a file the cloud's public key is read from: the runtime writes it, and would put the
    node's key where the box looks for the cloud's."""
    public = node_pub.public_path(node_key).resolve()
    texts = cloud.get("cloud_public_key") if isinstance(cloud, dict) else None
    for text in texts if isinstance(texts, list) else [texts]:
        if isinstance(text, str) and (base / text.strip()).resolve() == public:
            raise f.problem(
                "node_key",
                f"a file whose public half ({public.name}) is not the cloud's key file",
                str(node_key.name),
            )


def _certificate_names_node(f: Fields, cert: Path, node: str) -> None:
    """The broker makes the certificate's CN the client's username and client id and allows it
    only the topics vb/<CN>/…: a certificate for another name could never sync this node."""
    wanted = f"a PEM certificate whose CN is the node id {node!r}"
    try:
        subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject
    except (OSError, ValueError):
        raise f.problem("cert", wanted, str(cert)) from None
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [node]:
        raise f.problem("cert", wanted, f"{cert} with CN {', '.join(names) or 'none'}")


def _public_key(f: Fields, base: Path, text: object) -> Ed25519PublicKey:
    wanted = "an Ed25519 public key: a PEM or key file, PEM text or 64 hex digits"
    if not isinstance(text, str) or not text.strip():
        raise f.problem("cloud_public_key", wanted, text)
    raw = text.strip().encode()
    if not raw.startswith(b"-----BEGIN") and len(raw) != 64:
        file = base / text
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise f.problem(
                "cloud_public_key", f"{wanted} (file {file}: {exc.strerror})", text
            ) from None
    try:
        return load_public_key(raw)
    except DecodeError as exc:
        raise f.problem("cloud_public_key", f"{wanted} ({exc})", text) from None


def _tls(f: Fields, base: Path) -> TlsFiles | None:
    names = ("ca", "cert", "key")
    given = {name: f.text(name, None) for name in names}
    if all(v is None for v in given.values()):
        return None
    for name in names:
        if given[name] is None:
            raise f.problem(name, "given with the other TLS files (ca, cert, key all or none)")
    for name in names:
        if not (base / given[name]).is_file():
            raise f.problem(name, "an existing file (relative to site.toml)", given[name])
    key = base / given["key"]
    try:  # an encrypted key that will not open is refused here, before anything starts
        if key_files.is_encrypted(key.read_bytes()):
            key_files.load_private_key(key, key_files.passphrase(), encrypt_hint=ENCRYPT_HINT)
    except (key_files.KeyFileError, OSError) as exc:
        raise f.problem("key", f"a TLS key this box can open ({exc})", given["key"]) from None
    return TlsFiles(base / given["ca"], base / given["cert"], key)


def parse_cloud(path: Path, data: dict[str, Any]) -> CloudSettings | None:
    if "cloud" not in data:
        return None
    f = Fields(path, "[cloud]", data["cloud"])
    base = path.parent
    tls = _tls(f, base)
    raw_keys = f.raw("cloud_public_key")
    if raw_keys is None:
        raise f.problem("cloud_public_key", "the cloud's Ed25519 public key (file, PEM or hex)")
    texts = raw_keys if isinstance(raw_keys, list) and raw_keys else [raw_keys]
    defaults = CloudSettings("", 0, None, {})
    settings = CloudSettings(
        host=f.text("host"),
        port=f.integer("port", 1883 if tls is None else 8883, low=1, high=65_535),
        tls=tls,
        cloud_keys=trusted(*(_public_key(f, base, text) for text in texts)),
        keepalive_s=f.integer("keepalive_s", defaults.keepalive_s, low=5, high=3600),
        batch_bytes=f.integer(
            "batch_bytes", defaults.batch_bytes, low=1024, high=MAX_BATCH_BYTES // 4
        ),
        batch_items=f.integer("batch_items", defaults.batch_items, low=1, high=100_000),
        window=f.integer("window", defaults.window, low=1, high=64),
        ack_timeout_s=f.number("ack_timeout_s", defaults.ack_timeout_s, low=0.1),
        rate_bytes_s=f.integer("rate_bytes_s", defaults.rate_bytes_s, low=0),
        priority_alarms=f.integer("priority_alarms", defaults.priority_alarms, low=0, high=1000),
        tick_s=f.number("tick_s", defaults.tick_s, low=0.01),
    )
    f.unknown()
    return settings


def parse_simulation(path: Path, data: dict[str, Any]) -> SimulationSettings | None:
    if "simulation" not in data:
        return None
    f = Fields(path, "[simulation]", data["simulation"])
    start = f.raw("start")
    if isinstance(start, str):
        try:
            start = dt.datetime.fromisoformat(start)
        except ValueError:
            raise f.problem("start", "an ISO datetime with offset", start) from None
    if start is not None and (not isinstance(start, dt.datetime) or start.tzinfo is None):
        raise f.problem("start", "an ISO datetime with its UTC offset", start)
    settings = SimulationSettings(
        state_dir=path.parent / f.text("state_dir", "sim"),
        start=start,
        seed=f.integer("seed", 0),
    )
    f.unknown()
    return settings


def parse_status(path: Path, data: dict[str, Any]) -> tuple[str, int] | None:
    """`[status] listen = "HOST:PORT"`: where the read-only status page listens (no table, no
    page: it is off by default; `edge/status_page.py`)."""
    return parse_listen(path, data, "status")


def parse_metrics(path: Path, data: dict[str, Any]) -> tuple[str, int] | None:
    """`[metrics] listen = "HOST:PORT"`: where `voltbook-edge run` serves its Prometheus metrics
    (no table: off, the default; `edge/metrics.py`)."""
    return parse_listen(path, data, "metrics")


def parse_listen(path: Path, data: dict[str, Any], table: str) -> tuple[str, int] | None:
    """`[table] listen = "HOST:PORT"` (None without the table)."""
    if table not in data:
        return None
    f = Fields(path, f"[{table}]", data[table])
    listen = f.text("listen")
    host, _, port = str(listen).rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:8088
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or not host.isascii():
        raise f.problem("listen", 'HOST:PORT, e.g. "0.0.0.0:8088"', listen)
    f.unknown()
    return host, int(port)


def parse_bus(path: Path, number: int, raw: object) -> BusConfig:
    f = Fields(path, f"[[buses]] #{number}", raw)
    name = f.text("name")
    f.where = f"bus {name!r}"
    kind = BusKind(f.choice("kind", [k.value for k in BusKind]))
    proto = f.text("protocol", "dlt645")
    try:
        protocol(proto)
    except DriverUsageError as exc:
        raise SiteConfigError(path, f"bus {name!r}: {exc}") from None
    bus = BusConfig(
        name=name,
        kind=kind,
        protocol=proto,
        port=f.text("port") if kind is BusKind.SERIAL else f.text("port", None),
        baud=f.integer("baud", None, low=300, high=115_200),
        parity=f.choice("parity", ("E", "N", "O"), None),
        frequency_hz=f.integer("frequency_hz", None, low=1),
        spreading_factor=f.integer("spreading_factor", None, low=6, high=12),
        bandwidth_hz=f.integer("bandwidth_hz", None, low=1),
        radio=f.choice("radio", SIMULATED_RADIOS, None),
        options=parse_options(f, proto),
        meter_options=parse_meter_options(f, proto),
    )
    bus = _credentials(f, bus)
    if bus.radio is not None and kind is not BusKind.SIMULATED:
        raise SiteConfigError(
            path,
            f"bus {name!r}: 'radio' puts a simulated bus's meters behind a radio; a {kind} "
            "bus is real (remove 'radio', or make the bus kind = \"simulated\")",
        )
    f.unknown()
    return bus


# Credential fields: the hex digits each takes (as the meter's documents print them).
CREDENTIALS: dict[str, int] = {"password_level": 2, "password": 6, "operator_code": 8}


def _credentials(f: Fields, bus: BusConfig) -> BusConfig:
    """The bus with the DL/T 645 credentials `f` gives (defaults: level 02, all zeros)."""
    given = [name for name in CREDENTIALS if f.raw(name) is not None]
    if not given:
        return bus
    if not bus.protocol.startswith("dlt645"):
        raise f.problem(
            given[0], "absent: credentials are for DL/T 645 buses only", f.raw(given[0])
        )
    if bus.protocol == "dlt645-1997" and "operator_code" in given:
        raise f.problem(
            "operator_code", "absent: DL/T 645-1997 has no operator code", f.raw("operator_code")
        )
    values = {}
    for name, digits in CREDENTIALS.items():
        text = f.raw(name)
        if text is None:
            values[name] = getattr(bus, name)
        elif isinstance(text, str) and len(text) == digits and _is_hex(text):
            values[name] = int(text, 16)
        else:
            raise f.problem(name, f"{digits} hex digits in quotes like {'0' * digits!r}", text)
    return dataclasses.replace(
        bus,
        password_level=values["password_level"],
        password=values["password"],
        operator_code=values["operator_code"],
    )


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def parse_site_file(
    path: Path,
) -> tuple[SiteSettings, tuple[BusConfig, ...], SimulationSettings | None]:
    data = read_toml(path)
    unknown = sorted(
        set(data) - {"site", "buses", "blocks", "simulation", "cloud", "status", "metrics"}
    )
    if unknown:
        raise SiteConfigError(path, f"unknown table [{unknown[0]}] (misspelt?)")
    settings = parse_settings(path, data)
    raw_buses = data.get("buses", [])
    if not isinstance(raw_buses, list) or not raw_buses:
        raise SiteConfigError(path, "no [[buses]]: the concentrator would read no meter")
    buses = tuple(parse_bus(path, i, raw) for i, raw in enumerate(raw_buses, 1))
    names = [b.name for b in buses]
    for name in names:
        if names.count(name) > 1:
            raise SiteConfigError(path, f"two buses are named {name!r}")
    settings = dataclasses.replace(
        settings,
        blocks=parse_blocks(path, data.get("blocks"), buses),
        status_listen=parse_status(path, data),
        metrics_listen=parse_metrics(path, data),
    )
    simulation = parse_simulation(path, data)
    if simulation is None and any(b.kind is BusKind.SIMULATED for b in buses):
        simulation = SimulationSettings(state_dir=path.parent / "sim", start=None)
    return settings, buses, simulation
