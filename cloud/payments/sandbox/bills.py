"""The sandbox's bills, in the providers' own file formats (pure: records in, bytes out).

WeChat Pay trade bill (`GET /v3/bill/tradebill?bill_date=…&bill_type=ALL` → `{download_url,
hash_type: "SHA1", hash_value}`; the download itself is a signed GET), UTF-8 CSV, every field
prefixed with a backtick so a spreadsheet keeps long numbers as text:

    交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,
    付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,
    退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注
    `2026-12-05 10:00:00,`wx…,`1900000001,`0,`,`4200…,`VB…,`o…,`NATIVE,`SUCCESS,…,`19.90,…
    `2026-12-05 11:00:00,…,`REFUND,…,`50300…,`RF…,`5.00,`0.00,`ORIGINAL,`SUCCESS,…
    总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
    `2,`39.80,`5.00,`0.00,`0.24000,`39.80,`5.00

The fund-flow bill (`/v3/bill/fundflowbill`) is the same shape over the basic account's
movements (记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),
账户结余(元),资金变更提交申请人,备注,业务凭证号; summary 资金流水总笔数,收入笔数,收入金额,
支出笔数,支出金额).

Alipay (`alipay.data.dataservice.bill.downloadurl.query` {bill_type: trade, bill_date} →
`bill_download_url`): a zip of two GBK CSV files, `<pid>_<YYYYMMDD>_业务明细.csv` (a `#`
preamble, a header row, one row per trade or refund with tab-padded fields, a `#` trailer with
the sums) and `<pid>_<YYYYMMDD>_业务明细(汇总).csv`.

Times are Beijing time; a bill holds the trades paid and the refunds that succeeded that day.
`routes` serves them (a part of the sandbox app): `bill_date` in the future, or a malformed
one, is refused; a day with nothing on it is WeChat's `NO_STATEMENT_EXIST` and Alipay's
`isp.bill_not_exist`, as the providers answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from cloud.payments import money
from cloud.payments.sandbox.state import PAID
from cloud.payments.sandbox.wechat import WechatError, _authorised, signed

if TYPE_CHECKING:
    from cloud.payments.sandbox.app import Sandbox

BEIJING = dt.timezone(dt.timedelta(hours=8))
FEE_RATE_PPM = 6000  # 0.60 %, the sandbox's service fee (only printed)

WECHAT_TRADE_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
WECHAT_TRADE_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
WECHAT_FUND_HEADER = (
    "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),"
    "资金变更提交申请人,备注,业务凭证号"
)
WECHAT_FUND_SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"
ALIPAY_DETAIL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
ALIPAY_SUMMARY_HEADER = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
)
_RULE = "#-----------------------------------------"


@dataclass(frozen=True, slots=True)
class BillTrade:
    """A payment the provider took."""

    out_trade_no: str
    transaction_id: str
    fen: int
    paid_at: dt.datetime
    payer: str = ""
    trade_type: str = "NATIVE"


@dataclass(frozen=True, slots=True)
class BillRefund:
    """A refund that succeeded at the provider."""

    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    fen: int
    total_fen: int  # the order's
    succeeded_at: dt.datetime


def on_day(day: dt.date, at: dt.datetime) -> bool:
    return at.astimezone(BEIJING).date() == day


def _time(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _fee(fen: int) -> str:
    """The service fee in yuan with five decimals, as WeChat prints it (exact integers)."""
    hundred_thousandths = fen * FEE_RATE_PPM // 1000  # fen × rate, in 1e-5 yuan
    return f"{hundred_thousandths // 100000}.{hundred_thousandths % 100000:05d}"


def _tick(fields: Sequence[str]) -> str:
    return ",".join("`" + f for f in fields)


# -- WeChat Pay -----------------------------------------------------------------------------------
def wechat_trade_bill(
    day: dt.date,
    trades: Sequence[BillTrade],
    refunds: Sequence[BillRefund],
    *,
    appid: str,
    mchid: str,
) -> bytes:
    """The ALL trade bill of `day`: the day's payments, then its refunds, then the summary."""
    lines = [WECHAT_TRADE_HEADER]
    paid = [t for t in trades if on_day(day, t.paid_at)]
    back = [r for r in refunds if on_day(day, r.succeeded_at)]
    for t in sorted(paid, key=lambda t: (t.paid_at, t.out_trade_no)):
        lines.append(
            _tick(
                [
                    _time(t.paid_at),
                    appid,
                    mchid,
                    "0",
                    "",
                    t.transaction_id,
                    t.out_trade_no,
                    t.payer,
                    t.trade_type,
                    "SUCCESS",
                    "OTHERS",
                    "CNY",
                    money.yuan(t.fen),
                    "0.00",
                    "0",
                    "0",
                    "0.00",
                    "0.00",
                    "",
                    "",
                    "Voltbook",
                    "",
                    _fee(t.fen),
                    "0.60%",
                    money.yuan(t.fen),
                    "0.00",
                    "",
                ]
            )
        )
    for r in sorted(back, key=lambda r: (r.succeeded_at, r.out_refund_no)):
        lines.append(
            _tick(
                [
                    _time(r.succeeded_at),
                    appid,
                    mchid,
                    "0",
                    "",
                    r.transaction_id,
                    r.out_trade_no,
                    "",
                    "NATIVE",
                    "REFUND",
                    "OTHERS",
                    "CNY",
                    "0.00",
                    "0.00",
                    r.refund_id,
                    r.out_refund_no,
                    money.yuan(r.fen),
                    "0.00",
                    "ORIGINAL",
                    "SUCCESS",
                    "Voltbook",
                    "",
                    "-" + _fee(r.fen),
                    "0.60%",
                    money.yuan(r.total_fen),
                    money.yuan(r.fen),
                    "",
                ]
            )
        )
    paid_fen, refunded_fen = sum(t.fen for t in paid), sum(r.fen for r in back)
    fees = sum(t.fen for t in paid) - sum(r.fen for r in back)
    lines.append(WECHAT_TRADE_SUMMARY)
    lines.append(
        _tick(
            [
                str(len(paid) + len(back)),
                money.yuan(paid_fen),
                money.yuan(refunded_fen),
                "0.00",
                _fee(fees) if fees >= 0 else "-" + _fee(-fees),
                money.yuan(paid_fen),
                money.yuan(refunded_fen),
            ]
        )
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def wechat_fundflow_bill(
    day: dt.date, trades: Sequence[BillTrade], refunds: Sequence[BillRefund], *, opening_fen: int
) -> bytes:
    """The basic account's movements of `day` (income: payments; expense: refunds)."""
    moves = [
        (t.paid_at, t.transaction_id, "交易", "收入", t.fen, t.out_trade_no)
        for t in trades
        if on_day(day, t.paid_at)
    ]
    moves += [
        (r.succeeded_at, r.refund_id, "退款", "支出", r.fen, r.out_refund_no)
        for r in refunds
        if on_day(day, r.succeeded_at)
    ]
    moves.sort()
    balance = opening_fen
    lines = [WECHAT_FUND_HEADER]
    for n, (at, business, name, direction, fen, voucher) in enumerate(moves, start=1):
        balance += fen if direction == "收入" else -fen
        lines.append(
            _tick(
                [
                    _time(at),
                    business,
                    f"{day:%Y%m%d}{n:010d}",
                    name,
                    name,
                    direction,
                    money.yuan(fen),
                    money.yuan(balance) if balance >= 0 else "-" + money.yuan(-balance),
                    "system",
                    "",
                    voucher,
                ]
            )
        )
    income = [m for m in moves if m[3] == "收入"]
    expense = [m for m in moves if m[3] == "支出"]
    lines.append(WECHAT_FUND_SUMMARY)
    lines.append(
        _tick(
            [
                str(len(moves)),
                str(len(income)),
                money.yuan(sum(m[4] for m in income)),
                str(len(expense)),
                money.yuan(sum(m[4] for m in expense)),
            ]
        )
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def sha1_hex(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


# -- Alipay -------------------------------------------------------------------------------------
def _pad(fields: Sequence[str]) -> str:
    return ",".join(f"{f}\t" for f in fields)


def _cn_time(at: dt.datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y年%m月%d日 %H:%M:%S")


def alipay_bill_zip(
    day: dt.date,
    trades: Sequence[BillTrade],
    refunds: Sequence[BillRefund],
    *,
    pid: str,
    exported: dt.datetime,
) -> bytes:
    """The trade bill of `day` as Alipay serves it: a zip of the detail and summary CSVs (GBK)."""
    paid = sorted((t for t in trades if on_day(day, t.paid_at)), key=lambda t: t.paid_at)
    back = sorted((r for r in refunds if on_day(day, r.succeeded_at)), key=lambda r: r.succeeded_at)
    start = dt.datetime.combine(day, dt.time(), BEIJING)
    span = f"#起始日期：[{_cn_time(start)}]   终止日期：[{_cn_time(start + dt.timedelta(days=1))}]"
    detail = [
        "#支付宝业务明细查询",
        f"#账号：[{pid}0156]",
        span,
        _RULE + "业务明细列表" + _RULE[1:],
        ALIPAY_DETAIL_HEADER,
    ]
    for t in paid:
        detail.append(
            _pad(
                [
                    t.transaction_id,
                    t.out_trade_no,
                    "交易",
                    "Voltbook充值",
                    _time(t.paid_at),
                    _time(t.paid_at),
                    "",
                    "",
                    "",
                    "",
                    t.payer,
                    money.yuan(t.fen),
                    money.yuan(t.fen),
                    "0.00",
                    "0.00",
                    "0.00",
                    "0.00",
                    "0.00",
                    "",
                    "0.00",
                    "0.00",
                    "",
                    "0.00",
                    "0.00",
                    "",
                ]
            )
        )
    for r in back:
        detail.append(
            _pad(
                [
                    r.transaction_id,
                    r.out_trade_no,
                    "退款",
                    "Voltbook充值",
                    _time(r.succeeded_at),
                    _time(r.succeeded_at),
                    "",
                    "",
                    "",
                    "",
                    "",
                    money.yuan(r.total_fen),
                    "-" + money.yuan(r.fen),
                    "0.00",
                    "0.00",
                    "0.00",
                    "0.00",
                    "0.00",
                    "",
                    "0.00",
                    "0.00",
                    r.out_refund_no,
                    "0.00",
                    "0.00",
                    "",
                ]
            )
        )
    paid_fen, refunded_fen = sum(t.fen for t in paid), sum(r.fen for r in back)
    detail += [
        _RULE + "业务明细列表结束" + _RULE[1:],
        f"#交易合计：{len(paid)}笔，商家实收共{money.yuan(paid_fen)}元，商家优惠共0.00元",
        f"#退款合计：{len(back)}笔，商家实收退款共-{money.yuan(refunded_fen)}元，商家优惠退款共0.00元",
        f"#导出时间：[{_cn_time(exported)}]",
    ]
    net = paid_fen - refunded_fen
    net_text = money.yuan(net) if net >= 0 else "-" + money.yuan(-net)
    summary = [
        "#支付宝业务汇总查询",
        f"#账号：[{pid}0156]",
        span,
        _RULE + "业务汇总列表" + _RULE[1:],
        ALIPAY_SUMMARY_HEADER,
        _pad(
            [
                "合计",
                "",
                str(len(paid)),
                str(len(back)),
                money.yuan(paid_fen),
                net_text,
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                net_text,
            ]
        ),
        _RULE + "业务汇总列表结束" + _RULE[1:],
        f"#导出时间：[{_cn_time(exported)}]",
    ]
    stem = f"{pid}0156_{day:%Y%m%d}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}_业务明细.csv", "\r\n".join(detail).encode("gbk"))
        archive.writestr(f"{stem}_业务明细(汇总).csv", "\r\n".join(summary).encode("gbk"))
    return out.getvalue()


# -- the sandbox part -----------------------------------------------------------------------------
def day_records(sandbox: Sandbox, provider: str) -> tuple[list[BillTrade], list[BillRefund]]:
    """Every payment the sandbox took for `provider`, and every refund that succeeded."""
    with sandbox.state.lock:
        trades = [
            BillTrade(o.out_trade_no, o.transaction_id, o.fen, o.paid_at, o.payer,
                      {"jsapi": "JSAPI", "native": "NATIVE", "h5": "MWEB"}.get(o.channel, ""))
            for o in sandbox.state.orders.values()
            if o.provider == provider and o.state == PAID and o.paid_at is not None
        ]  # fmt: skip
        desk = getattr(sandbox.app.state, "refund_desk", None)
        refunds: list[BillRefund] = [] if desk is None else desk.bill_refunds(provider)
    return trades, refunds


def _bill_day(text: object, today: dt.date) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(str(text))
    except ValueError:
        return None
    return day if len(str(text)) == 10 and day <= today else None


def routes(sandbox: Sandbox) -> APIRouter:
    files: dict[str, bytes] = {}  # download token → the file
    router = APIRouter(tags=["bills"])

    def store(data: bytes) -> str:
        token = secrets.token_urlsafe(16)
        with sandbox.state.lock:
            files[token] = data
        return token

    def wechat_bill(kind: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        today = sandbox.now().astimezone(BEIJING).date()
        day = _bill_day(query.get("bill_date"), today)
        if day is None:
            raise WechatError(400, "PARAM_ERROR", "bill_date is a past day, YYYY-MM-DD")
        trades, refunds = day_records(sandbox, "wechat")
        if not any(on_day(day, t.paid_at) for t in trades) and not any(
            on_day(day, r.succeeded_at) for r in refunds
        ):
            raise WechatError(400, "NO_STATEMENT_EXIST", "该日期无账单")
        if kind == "trade":
            data = wechat_trade_bill(day, trades, refunds, appid=sandbox.keys.appid,
                                     mchid=sandbox.keys.mchid)  # fmt: skip
        else:
            data = wechat_fundflow_bill(day, trades, refunds, opening_fen=0)
        url = f"{sandbox.base_url}/v3/billdownload/file?token={store(data)}"
        return 200, {"download_url": url, "hash_type": "SHA1", "hash_value": sha1_hex(data)}

    async def answer(request: Request, kind: str) -> Response:
        body = await request.body()
        try:
            _authorised(sandbox, request, body)
            status, content = await run_in_threadpool(wechat_bill, kind, dict(request.query_params))
        except WechatError as exc:
            return signed(sandbox, exc.status, {"code": exc.code, "message": exc.message})
        return signed(sandbox, status, content)

    @router.get("/v3/bill/tradebill")
    async def tradebill(request: Request) -> Response:
        return await answer(request, "trade")

    @router.get("/v3/bill/fundflowbill")
    async def fundflowbill(request: Request) -> Response:
        return await answer(request, "fundflow")

    @router.get("/v3/billdownload/file")
    async def download(request: Request) -> Response:
        try:
            _authorised(sandbox, request, b"")
        except WechatError as exc:
            return signed(sandbox, exc.status, {"code": exc.code, "message": exc.message})
        data = files.get(request.query_params.get("token", ""))
        if data is None:
            return signed(sandbox, 404, {"code": "RESOURCE_NOT_EXISTS", "message": "no file"})
        return Response(data, media_type="text/plain; charset=utf-8")

    def alipay_bill(
        sandbox: Sandbox, params: dict[str, str], biz: dict[str, Any]
    ) -> dict[str, Any]:
        today = sandbox.now().astimezone(BEIJING).date()
        day = _bill_day(biz.get("bill_date"), today)
        if biz.get("bill_type") != "trade" or day is None:
            return {"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_type_error",
                    "sub_msg": "bill_type trade and a past bill_date, YYYY-MM-DD"}  # fmt: skip
        trades, refunds = day_records(sandbox, "alipay")
        if not any(on_day(day, t.paid_at) for t in trades) and not any(
            on_day(day, r.succeeded_at) for r in refunds
        ):
            return {"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_not_exist",
                    "sub_msg": "账单不存在"}  # fmt: skip
        data = alipay_bill_zip(day, trades, refunds, pid=sandbox.keys.seller_id[:12],
                               exported=sandbox.now())  # fmt: skip
        url = f"{sandbox.base_url}/alipay/bills/{store(data)}.zip"
        return {"code": "10000", "msg": "Success", "bill_download_url": url}

    sandbox.alipay_methods["alipay.data.dataservice.bill.downloadurl.query"] = alipay_bill

    @router.get("/alipay/bills/{name}")
    def alipay_file(name: str) -> Response:
        data = files.get(name.removesuffix(".zip"))
        if data is None:
            return Response(b"not found", status_code=404)
        return Response(data, media_type="application/zip")

    return router
