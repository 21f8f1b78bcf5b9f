"""The providers' daily bills, downloaded and read as untrusted bytes (`cloud.payments.reconcile`).

    WeChat Pay  GET /v3/bill/tradebill?bill_date=D&bill_type=ALL (signed) → {download_url,
                hash_type SHA1, hash_value}; GET download_url (signed, same host as api_base);
                the file's SHA-1 must be hash_value. No trade that day: 400 NO_STATEMENT_EXIST.
                UTF-8 CSV, every field `-prefixed, a summary section at the end
                (`cloud.payments.sandbox.bills` draws the layout)
    Alipay      alipay.data.dataservice.bill.downloadurl.query {bill_type: trade, bill_date}
                → bill_download_url (same host as the gateway, or https on alipay.com);
                a zip with the detail (业务明细) and summary (汇总) CSVs in GBK.
                No bill: sub_code isp.bill_not_exist.

Each parser gives a `Bill` (its lines and the totals its own summary states, checked against
its lines) or `PaymentRefused("bad_bill", …)`: any bytes, never another exception. Sizes are
capped before anything is decompressed or split.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import struct
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx

from cloud.errors import Invalid, PaymentRefused, ProviderUnavailable
from cloud.payments import money, wechat_scheme
from cloud.payments.providers import ALIPAY_SUCCESS, Alipay, WechatPay

MAX_BILL_BYTES = 32 * 1024 * 1024
MAX_MEMBERS = 8
MAX_LINES = 500_000
MAX_FIELD = 256
TRADE, REFUND = "trade", "refund"
ALIPAY_BILL = "alipay.data.dataservice.bill.downloadurl.query"


@dataclass(frozen=True, slots=True)
class BillLine:
    kind: str  # trade, refund
    out_trade_no: str
    transaction_id: str
    fen: int  # paid (trade) or refunded (refund), positive
    out_refund_no: str = ""
    refund_id: str = ""
    time: str = ""  # as the bill prints it (Beijing time)


@dataclass(frozen=True, slots=True)
class Bill:
    provider: str
    lines: tuple[BillLine, ...]
    count: int  # as its summary says
    paid_fen: int
    refunded_fen: int

    @property
    def trades(self) -> list[BillLine]:
        return [line for line in self.lines if line.kind == TRADE]

    @property
    def refunds(self) -> list[BillLine]:
        return [line for line in self.lines if line.kind == REFUND]


def empty(provider: str) -> Bill:
    return Bill(provider, (), 0, 0, 0)


def _refuse(detail: str) -> PaymentRefused:
    return PaymentRefused("bad_bill", detail)


def _fen(text: str, what: str) -> int:
    try:
        return money.fen_of(text)
    except Invalid:
        raise _refuse(f"{what} {text[:20]!r} is not an amount in yuan") from None


def _checked(bill: Bill) -> Bill:
    """A bill whose lines add up to what its summary says."""
    paid = sum(line.fen for line in bill.trades)
    refunded = sum(line.fen for line in bill.refunds)
    if (paid, refunded) != (bill.paid_fen, bill.refunded_fen):
        raise _refuse(
            f"its lines sum to {paid}/{refunded} fen paid/refunded, its summary says "
            f"{bill.paid_fen}/{bill.refunded_fen}"
        )
    return bill


def _rows(text: str) -> list[list[str]]:
    if text.count("\n") > MAX_LINES:
        raise _refuse(f"more than {MAX_LINES} lines")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise _refuse(f"not CSV: {exc}") from None
    for row in rows:
        if any(len(field) > MAX_FIELD for field in row):
            raise _refuse(f"a field is longer than {MAX_FIELD} characters")
    return [row for row in rows if row]


# -- WeChat Pay ---------------------------------------------------------------------------------
_W = {
    name: i
    for i, name in enumerate(
        [
            "交易时间",
            "公众账号ID",
            "商户号",
            "特约商户号",
            "设备号",
            "微信订单号",
            "商户订单号",
            "用户标识",
            "交易类型",
            "交易状态",
            "付款银行",
            "货币种类",
            "应结订单金额",
            "代金券金额",
            "微信退款单号",
            "商户退款单号",
            "退款金额",
            "充值券退款金额",
            "退款类型",
            "退款状态",
            "商品名称",
            "商户数据包",
            "手续费",
            "费率",
            "订单金额",
            "申请退款金额",
            "费率备注",
        ]
    )
}
_W_SUMMARY = "总交易单数"


def _untick(row: Sequence[str], width: int, what: str) -> list[str]:
    if len(row) != width:
        raise _refuse(f"a {what} row has {len(row)} fields, not {width}")
    if not all(field.startswith("`") for field in row):
        raise _refuse(f"a {what} field lacks its backtick")
    return [field[1:] for field in row]


def parse_wechat(data: bytes) -> Bill:
    """A WeChat Pay ALL trade bill."""
    if len(data) > MAX_BILL_BYTES:
        raise _refuse(f"{len(data)} bytes is too large")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refuse("not UTF-8") from None
    rows = _rows(text)
    if len(rows) < 3 or rows[0] != list(_W):
        raise _refuse("no trade bill header")
    if not rows[-2] or rows[-2][0] != _W_SUMMARY:
        raise _refuse("no summary section at the end")
    lines = [_wechat_line(_untick(row, len(_W), "trade")) for row in rows[1:-2]]
    summary = _untick(rows[-1], 7, "summary")
    try:
        count = int(summary[0])
    except ValueError:
        raise _refuse(f"the count {summary[0][:20]!r} is not a number") from None
    if count != len(lines):
        raise _refuse(f"the summary counts {count} rows, the bill has {len(lines)}")
    bill = Bill(
        "wechat",
        tuple(lines),
        count,
        _fen(summary[1], "应结订单总金额"),
        _fen(summary[2], "退款总金额"),
    )
    return _checked(bill)


def _wechat_line(fields: list[str]) -> BillLine:
    state = fields[_W["交易状态"]]
    common = {
        "out_trade_no": _id(fields[_W["商户订单号"]], "商户订单号"),
        "transaction_id": _id(fields[_W["微信订单号"]], "微信订单号"),
        "time": fields[_W["交易时间"]],
    }
    if state == "SUCCESS":
        return BillLine(TRADE, fen=_fen(fields[_W["应结订单金额"]], "应结订单金额"), **common)
    if state == "REFUND":
        if fields[_W["退款状态"]] != "SUCCESS":
            raise _refuse(f"refund state {fields[_W['退款状态']][:20]!r} in a bill")
        return BillLine(
            REFUND,
            fen=_fen(fields[_W["退款金额"]], "退款金额"),
            out_refund_no=_id(fields[_W["商户退款单号"]], "商户退款单号"),
            refund_id=_id(fields[_W["微信退款单号"]], "微信退款单号"),
            **common,
        )
    raise _refuse(f"trade state {state[:20]!r} in a bill")


def _id(text: str, what: str) -> str:
    if not 0 < len(text) <= 64 or not text.isascii() or not text.isprintable():
        raise _refuse(f"{what} {text[:20]!r} is not an identifier")
    return text


# -- Alipay -------------------------------------------------------------------------------------
_A = {
    name: i
    for i, name in enumerate(
        [
            "支付宝交易号",
            "商户订单号",
            "业务类型",
            "商品名称",
            "创建时间",
            "完成时间",
            "门店编号",
            "门店名称",
            "操作员",
            "终端号",
            "对方账户",
            "订单金额（元）",
            "商家实收（元）",
            "支付宝红包（元）",
            "集分宝（元）",
            "支付宝优惠（元）",
            "商家优惠（元）",
            "券核销金额（元）",
            "券名称",
            "商家红包消费金额（元）",
            "卡消费金额（元）",
            "退款批次号/请求号",
            "服务费（元）",
            "分润（元）",
            "备注",
        ]
    )
}


def _members(data: bytes) -> dict[str, bytes]:
    if len(data) > MAX_BILL_BYTES:
        raise _refuse(f"{len(data)} bytes is too large")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _refuse(f"{len(infos)} files in the zip")
            if sum(i.file_size for i in infos) > MAX_BILL_BYTES:
                raise _refuse("the zip unpacks too large")
            out = {}
            for info in infos:
                with archive.open(info) as member:
                    content = member.read(MAX_BILL_BYTES + 1)
                if len(content) > MAX_BILL_BYTES:
                    raise _refuse("a file in the zip unpacks too large")
                out[_member_name(info)] = content
            return out
    except PaymentRefused:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        KeyError,
        IndexError,
        zlib.error,
        struct.error,
    ) as exc:
        raise _refuse(f"not a zip we can read ({type(exc).__name__})") from None


def _member_name(info: zipfile.ZipInfo) -> str:
    """A member's name; Alipay's are GBK without the zip's UTF-8 flag (read as cp437)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _gbk(content: bytes) -> str:
    try:
        return content.decode("gbk")
    except UnicodeDecodeError:
        raise _refuse("a bill file is not GBK text") from None


def parse_alipay(data: bytes) -> Bill:
    """An Alipay trade bill zip: the detail file's rows, checked against its `#` trailer and
    the summary file's totals."""
    members = _members(data)
    detail = [n for n in members if n.endswith("_业务明细.csv")]
    summary = [n for n in members if n.endswith("_业务明细(汇总).csv")]
    if len(detail) != 1 or len(summary) != 1:
        raise _refuse("the zip must hold one detail and one summary file")
    lines, trailer = _alipay_detail(_gbk(members[detail[0]]))
    count, paid, refunded = _alipay_summary(_gbk(members[summary[0]]))
    if trailer != (paid, refunded):
        raise _refuse("the detail's trailer and the summary disagree")
    bill = Bill("alipay", tuple(lines), count, paid, refunded)
    if count != len(lines):
        raise _refuse(f"the summary counts {count} rows, the detail has {len(lines)}")
    return _checked(bill)


def _table(text: str) -> tuple[list[str], list[str]]:
    """The `#` comment lines and the CSV lines of an Alipay bill file."""
    comments: list[str] = []
    body: list[str] = []
    for line in text.splitlines():
        (comments if line.startswith("#") else body).append(line)
    return comments, body


def _alipay_detail(text: str) -> tuple[list[BillLine], tuple[int, int]]:
    comments, body = _table(text)
    rows = [[f.strip() for f in row] for row in _rows("\n".join(body))]
    if not rows or rows[0] != list(_A):
        raise _refuse("no detail header")
    lines = []
    for row in rows[1:]:
        if len(row) != len(_A):
            raise _refuse(f"a detail row has {len(row)} fields, not {len(_A)}")
        lines.append(_alipay_line(row))
    paid = _trailer(comments, "#交易合计：", "商家实收共")
    refunded = _trailer(comments, "#退款合计：", "商家实收退款共-")
    return lines, (paid, refunded)


def _alipay_line(row: list[str]) -> BillLine:
    kind = row[_A["业务类型"]]
    common = {
        "out_trade_no": _id(row[_A["商户订单号"]], "商户订单号"),
        "transaction_id": _id(row[_A["支付宝交易号"]], "支付宝交易号"),
        "time": row[_A["完成时间"]],
    }
    received = row[_A["商家实收（元）"]]
    if kind == "交易":
        return BillLine(TRADE, fen=_fen(received, "商家实收"), **common)
    if kind == "退款":
        if not received.startswith("-"):
            raise _refuse("a refund's 商家实收 must be negative")
        return BillLine(
            REFUND,
            fen=_fen(received[1:], "商家实收"),
            out_refund_no=_id(row[_A["退款批次号/请求号"]], "退款请求号"),
            **common,
        )
    raise _refuse(f"business type {kind[:20]!r} in a bill")


def _trailer(comments: list[str], start: str, marker: str) -> int:
    found = [c for c in comments if c.startswith(start)]
    if len(found) != 1 or marker not in found[0]:
        raise _refuse(f"no single {start.strip('#：')} line")
    amount = found[0].split(marker, 1)[1].split("元", 1)[0]
    return _fen(amount, start)


def _alipay_summary(text: str) -> tuple[int, int, int]:
    _, body = _table(text)
    rows = [[f.strip() for f in row] for row in _rows("\n".join(body))]
    totals = [row for row in rows if row and row[0] == "合计"]
    if len(totals) != 1 or len(totals[0]) < 6:
        raise _refuse("no single 合计 row in the summary")
    row = totals[0]
    try:
        trades, refunds = int(row[2]), int(row[3])
    except ValueError:
        raise _refuse("the summary's counts are not numbers") from None
    if trades < 0 or refunds < 0:
        raise _refuse("the summary's counts are negative")
    paid = _fen(row[4], "订单金额")
    net_text = row[5]
    net = (
        -_fen(net_text[1:], "商家实收") if net_text.startswith("-") else _fen(net_text, "商家实收")
    )
    return trades + refunds, paid, paid - net


# -- downloads ------------------------------------------------------------------------------------
def download_wechat(wechat: WechatPay, day: dt.date) -> Bill:
    """The day's ALL trade bill from WeChat Pay, its SHA-1 checked."""
    answer = wechat.call(
        "GET", "/v3/bill/tradebill", query={"bill_date": day.isoformat(), "bill_type": "ALL"}
    )
    if answer.code == "NO_STATEMENT_EXIST":
        return empty("wechat")
    if not answer.ok:
        raise ProviderUnavailable(f"WeChat Pay gave no bill for {day}: {answer.code}")
    url, hash_type, hash_value = (
        answer.body.get(k) for k in ("download_url", "hash_type", "hash_value")
    )
    if not (isinstance(url, str) and hash_type == "SHA1" and isinstance(hash_value, str)):
        raise ProviderUnavailable("WeChat Pay's bill answer lacks download_url or its SHA1")
    path_query = _same_host(url, wechat.settings.api_base)
    header = wechat_scheme.authorization(
        mchid=wechat.settings.mchid,
        serial=wechat.settings.merchant_serial,
        key=wechat.merchant_key,
        method="GET",
        path_query=path_query,
        body=b"",
        timestamp=wechat.now_s(),
        nonce=hashlib.sha256(url.encode()).hexdigest()[:32],
    )
    data = _fetch(wechat.http, wechat.settings.api_base + path_query, {"Authorization": header})
    if hashlib.sha1(data, usedforsecurity=False).hexdigest() != hash_value.lower():
        raise ProviderUnavailable("the WeChat Pay bill's SHA1 is not the one announced")
    return parse_wechat(data)


def download_alipay(alipay: Alipay, day: dt.date) -> Bill:
    """The day's trade bill from Alipay."""
    content = alipay.call(ALIPAY_BILL, {"bill_type": "trade", "bill_date": day.isoformat()})
    if content.get("sub_code") == "isp.bill_not_exist":
        return empty("alipay")
    url = content.get("bill_download_url")
    if str(content.get("code")) != ALIPAY_SUCCESS or not isinstance(url, str):
        raise ProviderUnavailable(f"Alipay gave no bill for {day}: {content.get('sub_code')}")
    gateway = urllib.parse.urlsplit(alipay.settings.gateway)
    target = urllib.parse.urlsplit(url)
    on_alipay = target.scheme == "https" and (target.hostname or "").endswith(".alipay.com")
    if not on_alipay:
        _same_host(url, f"{gateway.scheme}://{gateway.netloc}")
    return parse_alipay(_fetch(alipay.http, url, {}))


def _same_host(url: str, base: str) -> str:
    """The path and query of `url`, which must be on `base`'s scheme and host (a bill link
    elsewhere is not followed)."""
    target, home = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    if (target.scheme, target.netloc) != (home.scheme, home.netloc):
        raise ProviderUnavailable(f"a bill link to {target.netloc[:60]!r} is not followed")
    return target.path + (f"?{target.query}" if target.query else "")


def _fetch(http: httpx.Client, url: str, headers: dict[str, str]) -> bytes:
    try:
        with http.stream("GET", url, headers=headers) as answer:
            if answer.status_code != 200:
                raise ProviderUnavailable(f"the bill download answered {answer.status_code}")
            return b"".join(_capped(answer.iter_bytes()))
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"the bill download failed: {exc}") from exc


def _capped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_BILL_BYTES:
            raise ProviderUnavailable("the bill is larger than we accept")
        yield chunk
