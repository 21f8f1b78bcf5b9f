"""The providers' bills: the sandbox's files (the providers' layouts) read back by the cloud's
parsers, tampered files refused, and any bytes either a bill or our `PaymentRefused`."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.errors import PaymentRefused
from cloud.payments import bills
from cloud.payments.sandbox import bills as sandbox_bills
from cloud.payments.sandbox.bills import BEIJING, BillRefund, BillTrade

DAY = dt.date(2026, 12, 5)


def at(hour: int, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), BEIJING)


TRADES = [
    BillTrade("VB0001", "4200002026000000000001", 1_990, at(9), "oUpF8u", "JSAPI"),
    BillTrade("VB0002", "4200002026000000000002", 10_000, at(23)),
    BillTrade("VB0003", "4200002026000000000003", 555, at(1, DAY + dt.timedelta(days=1))),
]
REFUNDS = [
    BillRefund(
        "RF0001",
        "50300000000000000000000001",
        "VB0001",
        "4200002026000000000001",
        500,
        1_990,
        at(12),
    ),
]


def wechat_file() -> bytes:
    return sandbox_bills.wechat_trade_bill(DAY, TRADES, REFUNDS, appid="wx1", mchid="1900")


def alipay_file() -> bytes:
    exported = at(9, DAY + dt.timedelta(days=1))
    return sandbox_bills.alipay_bill_zip(DAY, TRADES, REFUNDS, pid="208800", exported=exported)


@pytest.mark.parametrize(
    "read, data", [(bills.parse_wechat, wechat_file), (bills.parse_alipay, alipay_file)]
)
def test_a_bill_reads_back_what_the_provider_wrote(read, data) -> None:  # type: ignore[no-untyped-def]
    bill = read(data())
    assert [(x.kind, x.out_trade_no, x.fen) for x in bill.lines] == [
        ("trade", "VB0001", 1_990),
        ("trade", "VB0002", 10_000),
        ("refund", "VB0001", 500),
    ]
    assert bill.refunds[0].out_refund_no == "RF0001"
    assert (bill.count, bill.paid_fen, bill.refunded_fen) == (3, 11_990, 500)


def test_the_wechat_file_is_backticked_with_a_summary() -> None:
    text = wechat_file().decode()
    lines = text.strip().split("\r\n")
    assert lines[1].startswith("`2026-12-05 09:00:00,`wx1,`1900,")
    assert lines[-2].startswith("总交易单数") and lines[-1] == (
        "`3,`119.90,`5.00,`0.00,`0.68940,`119.90,`5.00"
    )


def test_the_alipay_zip_holds_gbk_detail_and_summary() -> None:
    with zipfile.ZipFile(io.BytesIO(alipay_file())) as archive:
        names = archive.namelist()
        detail = archive.read(names[0]).decode("gbk")
    assert names[0].endswith("_业务明细.csv") and names[1].endswith("_业务明细(汇总).csv")
    assert "#交易合计：2笔，商家实收共119.90元" in detail
    assert "\t,VB0001\t,退款\t" in detail


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("`19.90", "`19.91", 1),  # a line that no longer sums to the summary
        lambda t: t.replace("`3,`119.90", "`4,`119.90"),  # a count that is not the lines'
        lambda t: t.replace("`SUCCESS,`OTHERS", "`NOTPAY,`OTHERS", 1),
        lambda t: t.replace("`VB0002", "VB0002"),  # a field without its backtick
        lambda t: t.replace("总交易单数", "合计"),
        lambda t: t.replace("`119.90", "`1e2", 1),
    ],
)
def test_a_tampered_wechat_bill_is_refused(change) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PaymentRefused, match="bad_bill"):
        bills.parse_wechat(change(wechat_file().decode()).encode())


def rezip(members: dict[str, bytes], *, gbk_names: bool = False) -> bytes:
    out = io.BytesIO()
    names: dict[bytes, bytes] = {}
    with zipfile.ZipFile(out, "w") as archive:
        for number, (name, content) in enumerate(members.items()):
            raw = name.encode("gbk")  # as Alipay writes them: GBK bytes, no UTF-8 flag
            placeholder = (chr(ord("a") + number) * len(raw)).encode()
            if gbk_names:
                names[placeholder] = raw
            archive.writestr(placeholder.decode() if gbk_names else name, content)
    data = out.getvalue()
    for placeholder, raw in names.items():  # the same length: offsets stay right
        data = data.replace(placeholder, raw)
    return data


def test_gbk_member_names_are_read_as_alipay_writes_them() -> None:
    with zipfile.ZipFile(io.BytesIO(alipay_file())) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    assert bills.parse_alipay(rezip(members, gbk_names=True)).paid_fen == 11_990


def test_a_tampered_alipay_bill_is_refused() -> None:
    with zipfile.ZipFile(io.BytesIO(alipay_file())) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    detail = next(n for n in members if n.endswith("_业务明细.csv"))
    for old, new in (
        ("100.00\t,100.00", "100.00\t,100.01"),
        ("共119.90元", "共120.00元"),
        ("\t,交易\t", "\t,转账\t"),
        ("-5.00", "5.00"),
    ):
        text = members[detail].decode("gbk").replace(old, new, 1)
        with pytest.raises(PaymentRefused, match="bad_bill"):
            bills.parse_alipay(rezip(members | {detail: text.encode("gbk")}))
    with pytest.raises(PaymentRefused, match="GBK"):
        bills.parse_alipay(rezip(members | {detail: b"\xff\xfe\xfa"}))
    with pytest.raises(PaymentRefused, match="one detail"):
        bills.parse_alipay(rezip({detail: members[detail]}))
    bomb = rezip({f"{i}_业务明细.csv": b"" for i in range(20)})
    with pytest.raises(PaymentRefused, match="files in the zip"):
        bills.parse_alipay(bomb)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_any_bytes_are_a_wechat_bill_or_our_error(data: bytes) -> None:
    try:
        bill = bills.parse_wechat(data)
    except PaymentRefused:
        return
    assert bill.paid_fen == sum(x.fen for x in bill.trades)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.integers(0, 2000), st.binary(max_size=64))
def test_any_bytes_spliced_into_a_wechat_bill_are_a_bill_or_our_error(
    noise: bytes, where: int, cut: bytes
) -> None:
    genuine = wechat_file()
    data = genuine[:where] + noise + genuine[where + len(cut) :]
    with contextlib.suppress(PaymentRefused):
        bills.parse_wechat(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_are_an_alipay_bill_or_our_error(data: bytes) -> None:
    with contextlib.suppress(PaymentRefused):
        bills.parse_alipay(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1024), st.binary(max_size=1024))
def test_any_members_of_a_zip_are_an_alipay_bill_or_our_error(
    detail: bytes, summary: bytes
) -> None:
    data = rezip(
        {"2088_20261205_业务明细.csv": detail, "2088_20261205_业务明细(汇总).csv": summary}
    )
    with contextlib.suppress(PaymentRefused):
        bills.parse_alipay(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 4000), st.binary(min_size=1, max_size=8))
def test_a_flipped_zip_is_an_alipay_bill_or_our_error(where: int, noise: bytes) -> None:
    genuine = alipay_file()
    where %= len(genuine)
    with contextlib.suppress(PaymentRefused):
        bills.parse_alipay(genuine[:where] + noise + genuine[where + len(noise) :])
