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
             "move": "迁移", "debt_repay": "还欠费", "takeover": "换集中器接管"},
    "provider": {"wechat": "微信支付", "alipay": "支付宝"},
    "kind": {"paid_not_ours": "渠道收款无对应订单", "paid_not_recorded": "渠道已收款订单未付",
             "paid_not_credited": "已收款未充值", "credited_not_paid": "已充值未收款",
             "amount_mismatch": "金额不符", "refund_not_ours": "渠道退款无对应退款单",
             "refund_not_at_provider": "我方退款渠道无记录",
             "refund_state_mismatch": "渠道已退款我方未完成"},
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
             "debt_repay": "Debt repaid", "takeover": "Concentrator takeover"},
    "provider": {"wechat": "WeChat Pay", "alipay": "Alipay"},
    "kind": {"paid_not_ours": "Paid, order unknown", "paid_not_recorded": "Paid, order not paid",
             "paid_not_credited": "Paid, not credited", "credited_not_paid": "Credited, not paid",
             "amount_mismatch": "Amount differs", "refund_not_ours": "Refund unknown to us",
             "refund_not_at_provider": "Our refund not at the provider",
             "refund_state_mismatch": "Refunded there, not done here"},
}  # fmt: skip
WORDS = {"zh": ZH, "en": EN}


def word(key: str, value: str, lang: str = "zh") -> str:
    """The word for `value` in column `key` in `lang`, or the value itself."""
    return WORDS.get(lang, ZH).get(key, {}).get(value, value)


# The fixed Chinese texts of printed reports and statements (titles, columns, headings, filter
# names, statement lines) in English; a text not here (a saved template's title) stays as is.
ENGLISH: Mapping[str, str] = {
    "用电报表": "Consumption", "充值明细": "Recharges", "补贴报表": "Subsidies",
    "退款清单": "Refunds", "电表状态": "Meters", "月结单": "Monthly statement",
    "商户": "Merchant", "证件号": "ID number", "结余(Wh)": "Left over (Wh)",
    "账户": "Account", "商铺": "Shop", "楼栋": "Building", "楼层": "Floor", "时段": "Period",
    "账户类型": "Account type", "日期": "Date", "电表": "Meter", "扣费来源": "Paid from",
    "用电量(Wh)": "Energy (Wh)", "补贴电量(Wh)": "Subsidy energy (Wh)", "电费(元)": "Cost (yuan)",
    "时间": "Time", "单号": "Order no.", "金额(元)": "Amount (yuan)", "方式": "Method",
    "冲正(元)": "Corrections (yuan)", "入账净额(元)": "Net booked (yuan)",
    "操作员": "Operator", "状态": "Status", "发放(Wh)": "Issued (Wh)", "使用(Wh)": "Used (Wh)",
    "清零(Wh)": "Cleared (Wh)", "退款时间": "Refund time", "退款单号": "Refund no.",
    "退款方式": "Refund method", "经办人": "Operator", "付款人": "Paid by",
    "完成时间": "Closed", "交易号": "Transfer", "集中器": "Concentrator", "规约": "Protocol",
    "继电器": "Relay", "电表读数(Wh)": "Register (Wh)", "最后抄表": "Last read",
    "抄读次数": "Reads", "应抄次数": "Expected reads", "抄读成功率": "Read rate",
    "项目": "Item", "电量(Wh)": "Energy (Wh)", "类型": "Type", "月份": "Month",
    "预付余额": "Prepaid", "补贴电量": "Subsidy energy", "欠费": "Debt",
    "分时段用电": "Consumption by period",
    "充值、退款、冲正明细": "Recharges, refunds, corrections",
    "期初余额": "Opening balance", "期末余额": "Closing balance", "充值": "Recharges",
    "电费": "Energy cost", "退款": "Refunds", "冲正": "Corrections",
    "其他(迁移等)": "Other (moves …)", "补贴发放": "Subsidy issued", "补贴使用": "Subsidy used",
    "补贴清零": "Subsidy cleared", "新增欠费": "Debt incurred", "偿还欠费": "Debt repaid",
    "合计": "Total", "说明": "Note", "合闸": "closed", "分闸": "open",
    "支付对账单": "Payment reconciliation", "支付渠道": "Provider", "差异类型": "Difference",
    "商户订单号": "Order no.", "我方金额(元)": "Ours (yuan)", "渠道金额(元)": "Provider's (yuan)",
    "差异": "Differences", "账单笔数": "Bill count", "账单收款(元)": "Bill paid (yuan)",
    "账单退款(元)": "Bill refunded (yuan)", "入账笔数": "Our count",
    "我方收款(元)": "Our paid (yuan)", "充值入账(元)": "Credited (yuan)",
    "我方退款(元)": "Our refunded (yuan)", "签核": "Signed off", "未签核": "not signed off",
    "有差异": "differences", "无差异": "clean",
}  # fmt: skip


def in_lang(text: str, lang: str) -> str:
    """A fixed Chinese text of a report in `lang`."""
    return ENGLISH.get(text, text) if lang == "en" else text
