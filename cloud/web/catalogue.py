"""Every word the pages show, in one table: key → (Simplified Chinese, English).

Templates and page code name a key (`t("balance")`, `t("kwh_at", price="0.8365")`), never a
word: placeholders are `str.format` names. A test checks that every key a template uses is here
and that the subset web font (`static/fonts/`) has a glyph for every Chinese character here.
Errors say what happened and what to do, in the merchant's words.
"""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    # -- frame ---------------------------------------------------------------------------------
    "app_name": ("电费助手", "Voltbook"),
    "lang_other": ("English", "中文"),
    "logout": ("退出登录", "Log out"),
    "back_home": ("返回首页", "Back to my account"),
    # -- login ---------------------------------------------------------------------------------
    "login_title": ("商户登录", "Merchant login"),
    "user": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "login": ("登录", "Log in"),
    "login_wechat": ("微信登录", "Log in with WeChat"),
    "wechat_bind_hint": (
        "这个微信还没有绑定商户。请用密码登录一次，以后用微信即可直接登录。",
        "This WeChat is not linked to a merchant yet. Log in once with your password; next "
        "time WeChat logs you in.",
    ),
    "wechat_unavailable": (
        "微信登录暂未开通，请用密码登录。",
        "WeChat login is not available; please log in with your password.",
    ),
    "wechat_failed": (
        "微信登录没有成功，请重试或用密码登录。",
        "WeChat login did not work; try again or log in with your password.",
    ),
    "login_refused": (
        "用户名或密码不对。请再试一次；连续输错5次将锁定15分钟。",
        "Wrong user name or password. Try again; after 5 wrong tries the login is locked "
        "for 15 minutes.",
    ),
    "login_throttled": (
        "尝试次数太多，请1分钟后再试。",
        "Too many attempts. Please wait a minute and try again.",
    ),
    "login_missing": ("请填写用户名和密码。", "Please enter your user name and password."),
    "session_ended": (
        "登录已过期，请重新登录。",
        "Your session has ended. Please log in again.",
    ),
    "staff_title": ("请使用管理后台", "Please use the console"),
    "staff_body": (
        "此页面供商户在手机上使用。管理人员请使用电脑上的管理后台。",
        "This page is for merchants on their phones. Staff, please use the operator console.",
    ),
    # -- the account ---------------------------------------------------------------------------
    "account": ("账户", "Account"),
    "shop": ("商铺", "Shop"),
    "balance": ("余额", "Balance"),
    "yuan_sign": ("¥", "¥"),
    "kwh_left": ("约可用电", "Energy it buys"),
    "kwh_unit": ("度", "kWh"),
    "at_price": ("按当前电价 {price} 元/度", "at the current price of ¥{price}/kWh"),
    "at_price_period": (
        "按当前{period}电价 {price} 元/度",
        "at the current {period} price of ¥{price}/kWh",
    ),
    "no_price": ("电价未设置，请联系物业。", "No price is set; please ask the management office."),
    "subsidy_left": ("本月补贴剩余", "Subsidy left this month"),
    "debt": ("欠费", "Owed"),
    "debt_hint": (
        "充值后先抵扣欠费，余额为正后自动恢复供电。",
        "A top-up pays what is owed first; power comes back once the balance is positive.",
    ),
    "recharging": ("到账中", "Being credited"),
    "period_peak": ("峰时", "peak"),
    "period_flat": ("平时", "standard"),
    "period_valley": ("谷时", "off-peak"),
    "period_sharp": ("尖峰", "critical peak"),
    # -- use -----------------------------------------------------------------------------------
    "usage": ("用电量", "Energy used"),
    "usage_chart": ("近{months}个月用电量（度）", "Energy used, last {months} months (kWh)"),
    "this_month": ("本月", "This month"),
    "month_label": ("{month}月", "{month_name}"),
    # -- top-up --------------------------------------------------------------------------------
    "topup": ("充值", "Top up"),
    "topup_other": ("其他金额（元）", "Other amount (yuan)"),
    "pay_wechat": ("微信支付", "WeChat Pay"),
    "pay_alipay": ("支付宝", "Alipay"),
    "amount_missing": ("请选择或填写充值金额。", "Choose or enter an amount to top up."),
    "amount_bad": (
        "金额格式不对：请填写数字，最多两位小数，例如 88 或 88.50。",
        "That amount is not a number of yuan: write e.g. 88 or 88.50.",
    ),
    "amount_small": ("充值金额至少 {min} 元。", "A top-up is at least ¥{min}."),
    "amount_large": (
        "单笔充值最多 {max} 元，请分几次充值。",
        "A single top-up is at most ¥{max}; please split it.",
    ),
    "provider_bad": ("请选择支付方式。", "Choose how to pay."),
    "payment_unavailable": (
        "在线支付暂未开通，请到物业服务台充值。",
        "Online payment is not open yet; please top up at the management office.",
    ),
    "payment_failed": (
        "支付没有发起成功，钱没有扣。请稍后再试。",
        "The payment could not be started and nothing was charged. Please try again later.",
    ),
    # -- orders --------------------------------------------------------------------------------
    "order_title": ("充值订单", "Top-up order"),
    "orders": ("在线支付订单", "Online payments"),
    "order_number": ("订单号", "Order number"),
    "amount": ("金额", "Amount"),
    "order_state": ("状态", "State"),
    "order_created": ("等待支付", "Waiting for payment"),
    "order_paid": ("已支付，正在入账", "Paid, being credited"),
    "order_credited": ("支付成功", "Paid"),
    "order_recharge": ("充值到账", "Top-up credited"),
    "order_closed": ("已关闭（未支付）", "Closed (not paid)"),
    "order_refunding": ("退款中", "Being refunded"),
    "order_refunded": ("已退款", "Refunded"),
    "order_failed": ("失败，钱会退回", "Failed; the money will be returned"),
    "order_refreshing": ("页面每隔几秒自动刷新。", "This page refreshes every few seconds."),
    "order_pay_now": ("去支付", "Pay now"),
    "order_not_found": (
        "找不到这个订单。请从充值记录里打开。",
        "There is no such order. Please open it from your payment history.",
    ),
    # -- history -------------------------------------------------------------------------------
    "history": ("充值记录", "Payment history"),
    "history_empty": ("还没有充值记录。", "No payments yet."),
    "method_cash": ("现金", "Cash"),
    "method_card": ("刷卡", "Card"),
    "method_wechat": ("微信", "WeChat"),
    "method_alipay": ("支付宝", "Alipay"),
    "method_transfer": ("转账", "Transfer"),
    "status_pending": ("到账中", "Being credited"),
    "status_posted": ("已到账", "Credited"),
    "status_voided": ("未到账，将退款", "Not credited; to be refunded"),
    "receipt": ("收据", "Receipt"),
    "receipt_not_found": (
        "找不到这张收据。请从充值记录里打开。",
        "There is no such receipt. Please open it from your payment history.",
    ),
    # -- statement -----------------------------------------------------------------------------
    "statement": ("月结单", "Monthly statement"),
    "statement_download": ("下载 {month} 月结单（PDF）", "Download the {month} statement (PDF)"),
    "statement_bad_month": (
        "月份格式不对，请从首页的链接下载。",
        "That month is not valid; please use the link on your account page.",
    ),
    # -- alarms and notices --------------------------------------------------------------------
    "alarms": ("提醒与通知", "Alerts and notices"),
    "alarms_empty": ("没有新的提醒。", "No alerts."),
    "alarm_low_balance": (
        "余额不足，请及时充值，以免停电。",
        "Your balance is low: top up soon to keep the power on.",
    ),
    "alarm_arrears_trip": (
        "因欠费已停电。充值到账后自动恢复供电。",
        "Power was cut for arrears. It comes back once your top-up is credited.",
    ),
    "alarm_arrears_close": ("已恢复供电。", "Power is back on."),
    "alarm_overload": (
        "用电功率超过限额，请减少同时使用的电器。",
        "Your load was over the limit; please run fewer appliances at once.",
    ),
    "alarm_over_voltage": (
        "电压过高，已通知物业检查。",
        "The voltage was too high; the management office has been told.",
    ),
    "alarm_malicious_load": (
        "检测到违规用电（如电热器具），请停止使用，否则可能断电。",
        "A forbidden appliance (e.g. a heater) was detected: stop using it or power may be cut.",
    ),
    "alarm_recharge_refused": (
        "有一笔充值未能入账，钱将退回，请联系物业。",
        "A top-up could not be credited; the money will be returned. Please ask the office.",
    ),
    "notice": ("通知", "Notice"),
    "notice_low_balance": ("余额不足", "Low balance"),
    "notice_arrears_warning": ("欠费停电预告", "Power cut warning (arrears)"),
    "notice_cut_off": ("欠费停电", "Power cut for arrears"),
    "notice_recharge_credited": ("充值到账", "Top-up credited"),
    "notice_refund_paid": ("退款已付", "Refund paid"),
    "notice_power_off": ("停电通知", "Power-off notice"),
    # -- the operator console ------------------------------------------------------------------
    "console_name": ("电费管理后台", "Voltbook console"),
    "console_login_title": ("管理人员登录", "Staff login"),
    "console_nav": ("功能菜单", "Menu"),
    "menu_monitoring": ("用户监控", "Monitoring"),
    "signed_in_as": ("{user}（{role}）", "{user} ({role})"),
    "role_admin": ("管理员", "administrator"),
    "role_operator": ("操作员", "operator"),
    "role_finance": ("财务", "finance"),
    "role_auditor": ("审计", "auditor"),
    "role_installer": ("安装人员", "installer"),
    "role_merchant": ("商户", "merchant"),
    "tree_title": ("楼栋 / 楼层 / 商铺", "Building / floor / shop"),
    "tree_all": ("全部", "All"),
    "shops_count": ("{count} 户", "shops: {count}"),
    "search": ("搜索", "Search"),
    "search_hint": ("商铺、商户或表号", "Shop, merchant or meter"),
    "filter_state": ("状态", "State"),
    "state_any": ("全部状态", "Any state"),
    "state_online": ("在线", "Online"),
    "state_offline": ("离线", "Offline"),
    "state_arrears": ("欠费", "In arrears"),
    "apply": ("查询", "Apply"),
    "clear_filters": ("清除条件", "Clear"),
    "col_shop": ("商铺", "Shop"),
    "col_merchant": ("商户", "Merchant"),
    "col_meter": ("表号", "Meter"),
    "col_register": ("当前读数(度)", "Register (kWh)"),
    "col_this_month": ("本月(度)", "This month (kWh)"),
    "col_last_month": ("上月(度)", "Last month (kWh)"),
    "col_month_before": ("前月(度)", "Month before (kWh)"),
    "col_voltage": ("电压(V)", "Voltage (V)"),
    "col_current": ("电流(A)", "Current (A)"),
    "col_power": ("功率(W)", "Power (W)"),
    "col_pf": ("功率因数", "PF"),
    "col_relay": ("继电器", "Relay"),
    "col_online": ("通讯", "Link"),
    "col_balance": ("余额(元)", "Balance (¥)"),
    "col_days_left": ("可用天数", "Days left"),
    "relay_closed": ("合闸", "On"),
    "relay_open": ("分闸", "Off"),
    "unknown": ("—", "—"),
    "rows_of": ("第 {first}–{last} 条，共 {total} 条", "{first}–{last} of {total}"),
    "no_rows": ("没有符合条件的电表。", "No meter matches."),
    "page_previous": ("上一页", "Previous"),
    "page_next": ("下一页", "Next"),
    "loading": ("加载中…", "Loading…"),
    "meter_title": ("电表 {meter}", "Meter {meter}"),
    "meter_not_found": ("找不到这个电表。", "There is no such meter."),
    "daily_use_title": ("近30天每日用电", "Daily use, last 30 days"),
    "daily_use_kwh": ("用电(度)", "Use (kWh)"),
    "last_reading": ("最后抄表", "Last reading"),
    "concentrator": ("集中器", "Concentrator"),
    "account_id": ("账户", "Account"),
    "place": ("位置", "Place"),
    "back_monitoring": ("返回用户监控", "Back to monitoring"),
    # -- errors --------------------------------------------------------------------------------
    "error_title": ("出错了", "Something went wrong"),
    "csrf_refused": (
        "页面已过期，请返回重新操作。",
        "This page has expired; please go back and try again.",
    ),
    "not_found": ("找不到这个页面。", "There is no such page."),
    "bad_request": ("请求有误，请返回首页重试。", "Bad request; please go back and try again."),
    "server_busy": (
        "系统暂时不可用，请稍后再试。",
        "The system is not available right now; please try again later.",
    ),
}

LANGS = ("zh", "en")
