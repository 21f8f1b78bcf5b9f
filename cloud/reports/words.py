"""The words printed for coded values (a method `cash` is 现金, a status `posted` 已入账, a
tariff period `peak` 峰 …), per column key, in Chinese and English; a code with no word is
printed as it is. Used by what people read (report PDFs, `cloud.reports.pdf`; receipts,
`cloud.operations.receipt_print`): JSON and Excel keep the codes, which programs read.
"""

from __future__ import annotations

from collections.abc import Mapping

ZH: Mapping[str, Mapping[str, str]] = {
    "tariff_period": {"sharp": "尖", "peak": "峰", "flat": "平", "valley": "谷"},
    "method": {"cash": "现金", "card": "银行卡", "wechat": "微信支付", "alipay": "支付宝",
               "transfer": "转账", "original": "原路退回"},
    "status": {"pending": "待入账", "posted": "已入账", "voided": "已作废(应退款)",
               "requested": "已申请", "reserved": "已冻结", "paid": "已支付",
               "cancelled": "已取消", "failed": "失败", "applied": "已执行",
               "in_transit": "迁移中", "arrived": "已到账", "settled": "已结清"},
    "pocket": {"subsidy": "补贴", "prepaid": "预付", "grace": "宽限", "debt": "欠费",
               "credit": "信用"},
    "code": {"recharge": "充值", "consume": "用电", "subsidy_issue": "补贴发放",
             "subsidy_expire": "补贴清零", "refund": "退款", "grace_issue": "宽限发放",
             "grace_expire": "宽限到期", "correction": "冲正", "meter_settle": "换表结算",
             "move": "迁移", "debt_repay": "还欠费"},
}  # fmt: skip
EN: Mapping[str, Mapping[str, str]] = {
    "tariff_period": {"sharp": "Sharp", "peak": "Peak", "flat": "Flat", "valley": "Valley"},
    "method": {"cash": "Cash", "card": "Bank card", "wechat": "WeChat Pay", "alipay": "Alipay",
               "transfer": "Bank transfer", "original": "Back to the original payment"},
    "status": {"pending": "Pending", "posted": "Booked", "voided": "Void (payer owed a refund)",
               "requested": "Requested", "reserved": "Reserved", "paid": "Paid",
               "cancelled": "Cancelled", "failed": "Failed", "applied": "Applied",
               "in_transit": "In transit", "arrived": "Arrived", "settled": "Settled"},
    "pocket": {"subsidy": "Subsidy", "prepaid": "Prepaid", "grace": "Grace", "debt": "Debt",
               "credit": "Credit"},
    "code": {"recharge": "Recharge", "consume": "Consumption", "subsidy_issue": "Subsidy issued",
             "subsidy_expire": "Subsidy cleared", "refund": "Refund",
             "grace_issue": "Grace issued", "grace_expire": "Grace expired",
             "correction": "Correction", "meter_settle": "Meter swap bill", "move": "Move",
             "debt_repay": "Debt repaid"},
}  # fmt: skip
WORDS = {"zh": ZH, "en": EN}


def word(key: str, value: str, lang: str = "zh") -> str:
    """The word for `value` in column `key` in `lang`, or the value itself."""
    return WORDS.get(lang, ZH).get(key, {}).get(value, value)
