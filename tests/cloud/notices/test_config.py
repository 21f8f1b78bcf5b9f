"""`[notices]` in cloud.toml: the defaults, a full table, and each way it can be wrong (a
ConfigError naming the file and the key, before anything starts)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cloud.config import ConfigError, load_config

FULL = """
[notices]
low_balance_at = "08:30"
low_balance_days = 5
arrears_warn_before = 90
zone = "Asia/Urumqi"
every = 30
[notices.wechat_oa]
api_base = "http://127.0.0.1:8999/"
appid = "wx0123456789abcdef"
secret_file = "secrets/oa"
page_url = "https://pay.example/m/"
[notices.wechat_oa.templates]
low_balance = "Tlow-1"
power_off = "Tpower_2"
[notices.sms]
file = "sms.jsonl"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "oa").write_text("the-secret\n")
    path = tmp_path / "cloud.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_table_no_notices(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).notices is None


def test_an_empty_table_takes_the_defaults(tmp_path: Path) -> None:
    notices = load_config(write(tmp_path, "[notices]\n")).notices
    assert notices is not None
    assert (notices.low_balance_at, notices.low_balance_days, notices.zone, notices.every) == (
        dt.time(9, 0), 3, "Asia/Shanghai", 60.0)  # fmt: skip
    assert notices.wechat_oa is None and notices.sms is None


def test_a_full_table(tmp_path: Path) -> None:
    notices = load_config(write(tmp_path, FULL)).notices
    assert notices is not None
    assert notices.low_balance_at == dt.time(8, 30) and notices.low_balance_days == 5
    assert notices.arrears_warn_before == dt.timedelta(minutes=90)
    assert notices.zone == "Asia/Urumqi" and notices.every == 30.0
    oa = notices.wechat_oa
    assert oa is not None
    assert (oa.api_base, oa.appid, oa.page_url) == (
        "http://127.0.0.1:8999", "wx0123456789abcdef", "https://pay.example/m/")  # fmt: skip
    assert oa.secret() == "the-secret"
    assert dict(oa.templates) == {"low_balance": "Tlow-1", "power_off": "Tpower_2"}
    assert notices.sms is not None and notices.sms.file == tmp_path / "sms.jsonl"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[notices]\nlow_balance_at = "9:00"\n', ["[notices] low_balance_at", "HH:MM"]),
        ('[notices]\nlow_balance_at = "24:00"\n', ["[notices] low_balance_at"]),
        ("[notices]\nlow_balance_days = -1\n", ["[notices] low_balance_days", "from 0"]),
        ('[notices]\nzone = "Mars/Olympus"\n', ["[notices] zone", "IANA"]),
        ("[notices]\nevery = 0\n", ["[notices] every"]),
        ("[notices]\nsurprise = 1\n", ["unknown key [notices] surprise"]),
        ("[notices]\nwechat_oa = 5\n", ["[notices.wechat_oa] must be a table"]),
        ('[notices.wechat_oa]\nsecret_file = "secrets/oa"\n', ["[notices.wechat_oa] appid"]),
        ('[notices.wechat_oa]\nappid = "wx1"\n', ["[notices.wechat_oa] secret_file"]),
        ('[notices.wechat_oa]\nappid = "wx1"\nsecret_file = "nowhere"\n',
         ["[notices.wechat_oa] secret_file", "does not exist"]),
        ('[notices.wechat_oa]\nappid = "wx 1"\nsecret_file = "secrets/oa"\n',
         ["[notices.wechat_oa] appid"]),
        ('[notices.wechat_oa]\nappid = "wx1"\nsecret_file = "secrets/oa"\napi_base = "ftp://x"\n',
         ["[notices.wechat_oa] api_base", "http://"]),
        ('[notices.wechat_oa]\nappid = "wx1"\nsecret_file = "secrets/oa"\n'
         '[notices.wechat_oa.templates]\ncheckout = "T1"\n',
         ["unknown key [notices.wechat_oa.templates] checkout"]),
        ('[notices.wechat_oa]\nappid = "wx1"\nsecret_file = "secrets/oa"\n'
         "[notices.wechat_oa.templates]\nlow_balance = 5\n",
         ["[notices.wechat_oa.templates] low_balance", "a template id"]),
        ("[notices.sms]\n", ["[notices.sms] needs exactly one of url"]),
        ('[notices.sms]\nurl = "http://127.0.0.1:9/sms"\nfile = "x"\n', ["exactly one"]),
        ('[notices.sms]\nurl = "127.0.0.1:9"\n', ["[notices.sms] url", "http://"]),
    ],
)  # fmt: skip
def test_a_wrong_table_is_refused_naming_the_key(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    for name in names:
        assert name in message, message
