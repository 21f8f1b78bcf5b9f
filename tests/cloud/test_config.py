"""The cloud's config file: defaults, a full file, and every way a file can be wrong."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from cloud.config import MAX_ORDER_TTL_S, TEMPLATE, ConfigError, ProvisionSettings, load_config
from cloud.errors import CloudError
from cloud.ingest.claims import Enrolment
from cloud.server import enrolment_of

FULL = """
[database]
url = "postgresql+psycopg://voltbook:s3cret@db.example:5432/voltbook"

[broker]
host = "mqtt.example"
[broker.tls]
ca = "pki/ca.crt"
cert = "pki/cloud.crt"
key = "pki/cloud.key"

[api]
host = "0.0.0.0"
port = 9000
workers = 2

[keys]
cloud = "keys/cloud.pem"

[ingest]
workers = 3
"""


def write(tmp_path: Path, text: str, name: str = "cloud.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_no_file_means_every_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    data = tmp_path / "voltbook-data"
    assert config.path is None
    assert config.data_dir == data
    assert config.database_url == f"sqlite:///{data}/voltbook-cloud.db"
    assert config.broker.embedded and config.broker.port is None and config.broker.tls is None
    assert (config.api.host, config.api.port, config.api.url) == (
        "127.0.0.1",
        8080,
        "http://127.0.0.1:8080",
    )
    assert config.cloud_key == data / "cloud-key.pem"
    assert config.broker_dir == data / "broker"
    assert config.pki_dir == data / "pki"
    # Embedded: TLS on loopback, no plain listener unless asked for.
    assert (config.broker.listen, config.broker.plain_port) == ("127.0.0.1", None)
    assert config.broker.names == ("localhost", "127.0.0.1")
    assert config.ingest_workers == 1
    assert config.api.workers == 1


def test_data_dir_moves_the_defaults(tmp_path: Path) -> None:
    config = load_config(None, tmp_path / "elsewhere")
    assert config.database_url.endswith(f"{tmp_path}/elsewhere/voltbook-cloud.db")
    assert config.cloud_key == tmp_path / "elsewhere" / "cloud-key.pem"
    assert config.oplog_heads == tmp_path / "elsewhere" / "oplog-heads.jsonl"
    # Built by hand (as tests and embedders do), the heads still go to the data directory,
    # never to whatever directory the process happens to run in.
    by_hand = dataclasses.replace(config, data_dir=tmp_path / "by-hand")
    assert by_hand.oplog_heads == tmp_path / "by-hand" / "oplog-heads.jsonl"


def test_empty_file_means_defaults_next_to_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.data_dir == tmp_path
    assert config.database_url == f"sqlite:///{tmp_path}/voltbook-cloud.db"
    assert config.cloud_key == tmp_path / "cloud-key.pem"


def test_full_file(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    for name in ("ca.crt", "cloud.crt", "cloud.key"):
        (tmp_path / "pki" / name).write_text("PEM")
    config = load_config(write(tmp_path, FULL))
    assert config.database_url == "postgresql+psycopg://voltbook:s3cret@db.example:5432/voltbook"
    assert config.database_shown == "postgresql+psycopg://voltbook:***@db.example:5432/voltbook"
    assert not config.broker.embedded
    assert (config.broker.host, config.broker.port) == ("mqtt.example", 8883)  # TLS default
    assert config.broker.tls is not None
    assert config.broker.tls.key == tmp_path / "pki" / "cloud.key"
    assert (config.api.host, config.api.port, config.api.workers) == ("0.0.0.0", 9000, 2)
    assert config.cloud_key == tmp_path / "keys" / "cloud.pem"
    assert config.ingest_workers == 3


def test_relative_sqlite_file_is_next_to_the_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[database]\nurl = "sqlite:///db/vb.db"\n'))
    assert config.database_url == f"sqlite:///{tmp_path}/db/vb.db"


def test_external_broker_without_tls_defaults_to_1883(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[broker]\nhost = "10.0.0.5"\n'))
    assert (config.broker.embedded, config.broker.host, config.broker.port) == (
        False,
        "10.0.0.5",
        1883,
    )


def test_embedded_broker_on_a_fixed_port(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[broker]\nembedded = true\nport = 18830\n"))
    assert config.broker.embedded and config.broker.port == 18830


def test_embedded_broker_facing_the_network_with_a_demo_listener(tmp_path: Path) -> None:
    text = (
        '[broker]\nlisten = "0.0.0.0"\nport = 8883\nplain_port = 1883\n'
        'names = ["mqtt.example.com", "10.0.0.5"]\n'
    )
    broker = load_config(write(tmp_path, text)).broker
    assert (broker.embedded, broker.listen, broker.port, broker.plain_port) == (
        True,
        "0.0.0.0",
        8883,
        1883,
    )
    assert broker.dns_names == ["localhost", "mqtt.example.com"]
    assert broker.ip_addresses == ["127.0.0.1", "10.0.0.5"]


def test_the_init_template_loads_as_the_defaults(tmp_path: Path) -> None:
    template = load_config(write(tmp_path, TEMPLATE.format(name="cloud.toml", key="cloud-key.pem")))
    empty = load_config(write(tmp_path, "", "empty.toml"))
    assert dataclasses.replace(template, path=empty.path) == empty


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[database]\nurl = 5\n", ["[database] url", "a non-empty string", "not an integer 5"]),
        ('[database]\nurl = "not a url"\n', ["[database] url", "a database URL"]),
        ('[database]\nurl = "mysql://h/db"\n', ["[database] url", "postgresql+psycopg://"]),
        ('[api]\nport = "8080"\n', ["[api] port", "an integer from 0 to 65535", "'8080'"]),
        ("[api]\nport = 70000\n", ["[api] port", "70000"]),
        ("[api]\nport = 80.5\n", ["[api] port", "float"]),
        ("[ingest]\nworkers = 0\n", ["[ingest] workers", "from 1"]),
        ("[api]\nworkers = 0\n", ["[api] workers", "from 1"]),
        ("[ingest]\nworkers = true\n", ["[ingest] workers", "a boolean"]),
        ("[ingest]\npartitions = 0\n", ["[ingest] partitions", "from 1 to 1024"]),
        ("[ingest]\npartition = -1\n", ["[ingest] partition", "from 0 to 1023"]),
        (
            "[ingest]\nworkers = 2\npartitions = 4\npartition = 3\n",
            ["partition 3 + workers 2 must be at most partitions 4", "partition 3 to 4"],
        ),
        ("[ingest]\nworkers = 3\npartitions = 2\n", ["partition 0 + workers 3", "partitions 2"]),
        ("[ingest]\npartition = 1\n", ["partition 1 + workers 1", "(default: workers)"]),
        ('[ingest]\nrouting = "hash"\n', ["[ingest] routing", '"partitions" or "broker"']),
        ('[ingest]\nrouting = "broker"\npartitions = 2\n', ["no partitions or partition"]),
        ('[broker]\nembedded = "yes"\n', ["[broker] embedded", "true or false"]),
        ("database = 3\n", ["[database] must be a table"]),
        ('[broker]\nembedded = true\nhost = "h"\n', ["both embedded = true and host"]),
        ("[broker]\nembedded = false\n", ["needs the broker's host"]),
        ('[broker.tls]\nca = "x"\ncert = "y"\nkey = "z"\n', ["[broker.tls] ca", "does not exist"]),
        ("[keys]\ncloud = 1\n", ["[keys] cloud"]),
        ('[broker]\nlisten = "localhost"\n', ["[broker] listen", "an IP address"]),
        ('[broker]\nnames = "a.example"\n', ["[broker] names", "an array of host names"]),
        ('[broker]\nnames = ["a b"]\n', ["[broker] names", "an array of host names"]),
        ("[broker]\nplain_port = 70000\n", ["[broker] plain_port", "from 0 to 65535"]),
        ('[broker]\nhost = "h"\nplain_port = 1883\n', ["plain_port are for the embedded"]),
        ('[broker]\nhost = "h"\nlisten = "0.0.0.0"\n', ["listen, names and plain_port"]),
        ('[provision]\nbroker_host = "0.0.0.0"\n', ["[provision] broker_host", "can reach"]),
        ('[provision]\nbroker_host = "a b"\n', ["[provision] broker_host", "a host name"]),
        ("[provision]\nbroker_host = 3\n", ["[provision] broker_host"]),
        ("[provision]\nbroker_port = 0\n", ["[provision] broker_port", "from 1 to 65535"]),
        ("[provision]\nbroker = 1\n", ["unknown key [provision] broker"]),
    ],
)
def test_wrong_types_and_values_name_the_key(tmp_path: Path, text: str, names: list[str]) -> None:
    message = refused(write(tmp_path, text))
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[databse]\n", ["unknown key databse"]),
        ('[database]\nurl = "sqlite://"\npool = 3\n', ["unknown key [database] pool"]),
        ("[api]\nhots = 'x'\n", ["unknown key [api] hots", "known here: host, port"]),
        ('[broker]\nhost = "h"\n[broker.tls]\nca = "a"\ncert = "c"\nkey = "k"\nextra = 1\n', []),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, text: str, names: list[str]) -> None:
    for name in ("a", "c", "k"):
        (tmp_path / name).write_text("PEM")
    message = refused(write(tmp_path, text))
    assert "unknown key" in message
    for name in names:
        assert name in message


def test_corrupt_toml_says_so(tmp_path: Path) -> None:
    message = refused(write(tmp_path, '[database\nurl = "sqlite://"\n'))
    assert "not valid TOML" in message
    assert "line 1" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_bytes(b"[api]\nhost = '\xff'\n")
    assert "not UTF-8" in refused(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in refused(tmp_path / "nope.toml")


def test_config_error_is_a_cloud_error() -> None:
    assert issubclass(ConfigError, CloudError)


def test_the_correction_approval_amount(tmp_path: Path) -> None:
    assert load_config(None, tmp_path).approve_above_fen == 100_000
    found = load_config(write(tmp_path, "[operations]\napprove_corrections_above_fen = 5000\n"))
    assert found.approve_above_fen == 5_000
    for bad in ("-1", "1.5", '"5000"', "10000001"):
        text = f"[operations]\napprove_corrections_above_fen = {bad}\n"
        assert "[operations] approve_corrections_above_fen must be" in refused(
            write(tmp_path, text)
        )


def test_the_broker_address_provisioned_boxes_are_told(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).provision == ProvisionSettings(None, None)
    text = '[provision]\nbroker_host = "mqtt.example.com"\nbroker_port = 18883\n'
    config = load_config(write(tmp_path, text))
    assert config.provision == ProvisionSettings("mqtt.example.com", 18883)
    # An external broker: its address (overridden here), and no device CA to sign with.
    external = load_config(write(tmp_path, '[broker]\nhost = "10.0.0.5"\n' + text, "e.toml"))
    assert enrolment_of(external, None) == Enrolment(None, "mqtt.example.com", 18883)
    plain = load_config(write(tmp_path, '[broker]\nhost = "10.0.0.5"\nport = 1884\n', "p.toml"))
    assert enrolment_of(plain, None) == Enrolment(None, "10.0.0.5", 1884)


def test_the_backup_settings(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, ""))
    assert default.backup_repository == tmp_path / "backups"
    assert default.backup.key_file is None
    assert default.backup.passphrase_env == "VOLTBOOK_BACKUP_PASSPHRASE"
    text = (
        '[backup]\nrepository = "/srv/backups"\nkey_file = "keys/backup.key"\n'
        'pgbackrest_config = "/etc/pgbackrest/pgbackrest.conf"\nstanza = "main"\n'
        'passphrase_env = "VB_PASS"\nrun_as = "pgbackup"\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.backup_repository == Path("/srv/backups")
    assert config.backup.key_file == tmp_path / "keys/backup.key"
    assert config.backup.pgbackrest_config == Path("/etc/pgbackrest/pgbackrest.conf")
    assert (config.backup.stanza, config.backup.passphrase_env) == ("main", "VB_PASS")
    assert config.backup.run_as == "pgbackup"
    for bad, words in (
        ('stanza = "a b"', "[backup] stanza"),
        ('passphrase_env = "not a name"', "[backup] passphrase_env"),
        ("key_file = 3", "[backup] key_file"),
        ('keyfile = "x"', "unknown key [backup] keyfile"),
    ):
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_config(write(tmp_path, f"[backup]\n{bad}\n"))


def test_errors_name_a_top_level_table_without_a_leading_dot(tmp_path: Path) -> None:
    """`[payments]` is read through the top table's `table()`: its name is "payments", and a
    table under it is "payments.wechat" (a review found "[.payments]" in these messages)."""
    path = write(tmp_path, '[payments]\nnotify_base = "https://pay.example"\norder_ttl_s = 5\n')
    assert refused(path) == (
        f"cannot use the configuration {path}: [payments] order_ttl_s must be an integer "
        f"from 60 to {MAX_ORDER_TTL_S}, not an integer 5"
    )
    nested = write(tmp_path, '[payments]\nnotify_base = "https://pay.example"\n[payments.wechat]\n'
                   'platform_keys = 3\n', "n.toml")  # fmt: skip
    assert "[payments.wechat.platform_keys] must be a table" in refused(nested)


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("0", "an integer 0"),
        ("1.5", "a float 1.5"),
        ('"15"', "a string '15'"),
        ("true", "a boolean True"),
        ("[15]", "an array [15]"),
        ("{ minutes = 15 }", "a table {'minutes': 15}"),
        ("2026-12-06T08:00:00", "a date-time datetime.datetime(2026, 12, 6, 8, 0)"),
        ("2026-12-06", "a date datetime.date(2026, 12, 6)"),
        ("08:00:00", "a time datetime.time(8, 0)"),
    ],
)
def test_errors_name_what_was_given_with_its_article(tmp_path: Path, toml: str, words: str) -> None:
    """Every kind of TOML value, in words with the right article (a review found "not a int")."""
    path = write(tmp_path, f"[ingest]\nsilent_after_min = {toml}\n")
    assert refused(path) == (
        f"cannot use the configuration {path}: [ingest] silent_after_min must be an integer "
        f"from 1 to 10080, not {words}"
    )


def test_a_table_given_a_value_names_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "ingest = 45\n")
    assert refused(path) == (
        f"cannot use the configuration {path}: [ingest] must be a table, not an integer"
    )


def test_how_long_a_node_may_be_silent(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).silent_after == dt.timedelta(minutes=45)
    set_ = load_config(write(tmp_path, "[ingest]\nsilent_after_min = 20\n", "s.toml"))
    assert set_.silent_after == dt.timedelta(minutes=20)
    for bad in ("0", "10081", '"15"', "1.5"):
        text = f"[ingest]\nsilent_after_min = {bad}\n"
        assert "[ingest] silent_after_min must be an integer from 1 to 10080" in refused(
            write(tmp_path, text, "b.toml")
        )
