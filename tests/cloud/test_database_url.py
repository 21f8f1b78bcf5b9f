"""`cloud.database_url`: libpq's multi-host URL (the hot standby's) read into SQLAlchemy's form,
everything else left to SQLAlchemy, and a clear ValueError for what is not a URL."""

from __future__ import annotations

import pytest

from cloud.config import ConfigError, load_config
from cloud.database_url import parse_database_url
from cloud.db.engine import make_engine

STANDBY = "postgresql://voltbook:s%40cret@10.0.0.11:5432,10.0.0.12:5433/voltbook?target_session_attrs=read-write"


def test_a_host_list_becomes_repeated_host_parameters() -> None:
    url = parse_database_url(STANDBY)
    assert (url.drivername, url.username, url.password, url.database) == (
        "postgresql", "voltbook", "s@cret", "voltbook")  # fmt: skip
    assert url.host is None
    assert url.query["host"] == ("10.0.0.11:5432", "10.0.0.12:5433")
    assert url.query["target_session_attrs"] == "read-write"


def test_the_engine_hands_libpq_every_host() -> None:
    engine = make_engine(STANDBY)
    try:
        _args, kwargs = engine.dialect.create_connect_args(engine.url)
        assert kwargs["host"] == "10.0.0.11,10.0.0.12"
        assert kwargs["port"] == "5432,5433"
        assert kwargs["target_session_attrs"] == "read-write"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "text",
    ["sqlite:////srv/voltbook/cloud.db", "postgresql+psycopg://u@db.example:5432/voltbook"],
)
def test_single_host_urls_are_sqlalchemy_s(text: str) -> None:
    assert parse_database_url(text).render_as_string(hide_password=False) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("postgresql://u@a:99999,b/db", "out of range"),
        ("postgresql://u@a,b:x/db", "not host or host:port"),
        ("postgresql://u@a,/db", "not host or host:port"),
        ("postgresql://u@a,b/db?host=c", "must not repeat"),
        ("not a url at all", "not a database URL"),
    ],
)
def test_what_is_not_a_url_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_database_url(text)


def test_the_config_takes_the_multi_host_form_and_refuses_a_broken_one(tmp_path) -> None:
    path = tmp_path / "cloud.toml"
    path.write_text(f'[database]\nurl = "{STANDBY}"\n')
    config = load_config(path, tmp_path)
    assert parse_database_url(config.database_url).query["host"] == (
        "10.0.0.11:5432", "10.0.0.12:5433")  # fmt: skip
    assert "s@cret" not in config.database_shown and "cret" not in config.database_shown
    path.write_text('[database]\nurl = "postgresql://u@a:99999,b/db"\n')
    with pytest.raises(ConfigError, match="url"):
        load_config(path, tmp_path)
