"""The site configuration in tinydb behind the atomic storage, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.store import CorruptConfig, StoreUsageError
from edge.store.config_db import AtomicJSONStorage, ConfigDB, ConfigKind

METER = {"id": "000000000001", "bus": "rs485-1", "model": "DDSY1352", "shop": "S-101"}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "site.json"


def test_documents_survive_reopening(path: Path) -> None:
    with ConfigDB.open(path) as config:
        assert config.documents(ConfigKind.METERS) == []
        assert not path.exists()  # nothing is written until something is stored
        config.put(ConfigKind.METERS, METER)
        config.put(ConfigKind.METERS, {**METER, "shop": "S-102", "extra": 1})
        config.put(ConfigKind.METERS, {**METER, "shop": "S-102"})  # same id: replaced whole
        config.put(ConfigKind.TARIFFS, {"id": "flat", "price": 8365})
    with ConfigDB.open(path) as config:
        assert config.documents(ConfigKind.METERS) == [{**METER, "shop": "S-102"}]
        assert config.get(ConfigKind.TARIFFS, "flat") == {"id": "flat", "price": 8365}
        assert config.get(ConfigKind.SHOPS, "S-101") is None
        assert config.remove(ConfigKind.METERS, METER["id"]) is True
        assert config.remove(ConfigKind.METERS, METER["id"]) is False
        with pytest.raises(StoreUsageError, match="string 'id'"):
            config.put(ConfigKind.SHOPS, {"name": "no id"})


def test_replace_all_is_one_write_and_later_inserts_do_not_collide(path: Path) -> None:
    with ConfigDB.open(path) as config:
        config.put(ConfigKind.METERS, METER)
        config.put(ConfigKind.RULES, {"id": "old"})
        config.replace_all(
            {
                ConfigKind.METERS: [{"id": f"m{n}"} for n in range(3)],
                ConfigKind.ACCOUNTS: [{"id": "A0001", "credit_limit": 0}],
            }
        )
        assert config.documents(ConfigKind.RULES) == []
        config.put(ConfigKind.METERS, {"id": "m3"})
        assert [d["id"] for d in config.documents(ConfigKind.METERS)] == ["m0", "m1", "m2", "m3"]
        with pytest.raises(StoreUsageError, match="two meters documents with id m0"):
            config.replace_all({ConfigKind.METERS: [{"id": "m0"}, {"id": "m0"}]})
        assert len(config.documents(ConfigKind.METERS)) == 4


def test_writes_replace_the_file_and_keep_its_permissions(path: Path) -> None:
    with ConfigDB.open(path) as config:
        config.put(ConfigKind.METERS, METER)
        os.chmod(path, 0o640)
        inode = path.stat().st_ino
        config.put(ConfigKind.SHOPS, {"id": "S-101"})
    assert path.stat().st_ino != inode  # a new file renamed over the old, not rewritten
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda raw: raw[: len(raw) // 2], "perhaps truncated"),
        (lambda raw: b"", "empty"),
        (lambda raw: b"   \n", "empty"),
        (lambda raw: b'["meters"]', "top level is not a JSON object"),
        (lambda raw: b'{"meters": [1]}', "table 'meters' is not a JSON object"),
        (lambda raw: b'{"meters": {"1": 5}}', "document 1 of table 'meters'"),
        (lambda raw: b"\xff\xfe{}", "not valid JSON"),
    ],
    ids=["truncated", "empty", "blank", "list", "table", "document", "encoding"],
)
def test_a_damaged_file_is_refused_and_left_untouched(
    path: Path, damage: object, what: str
) -> None:
    with ConfigDB.open(path) as config:
        config.put(ConfigKind.METERS, METER)
    assert callable(damage)
    path.write_bytes(damage(path.read_bytes()))
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(CorruptConfig) as refused:
        ConfigDB.open(path)
    message = str(refused.value)
    assert str(path) in message and what in message
    assert "was not modified" in message and "restore the last backup" in message
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp


def test_a_file_damaged_while_open_is_never_written_over(path: Path) -> None:
    config = ConfigDB.open(path)
    config.put(ConfigKind.METERS, METER)
    path.write_bytes(b'{"meters": {"1": {"id"')
    with pytest.raises(CorruptConfig):
        config.put(ConfigKind.SHOPS, {"id": "S-101"})  # tinydb reads before it writes
    assert path.read_bytes() == b'{"meters": {"1": {"id"'


def test_leftover_temporaries_of_an_interrupted_write_are_removed(path: Path) -> None:
    AtomicJSONStorage(path).write({"meters": {"1": METER}})
    leftover = path.parent / f".{path.name}.abc123.tmp"
    leftover.write_bytes(b'{"meters": {"1": {"id": "half')
    with ConfigDB.open(path) as config:
        assert config.documents(ConfigKind.METERS) == [METER]
    assert not leftover.exists()


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUsageError, match="does not exist"):
        ConfigDB.open(tmp_path / "nowhere" / "site.json")
