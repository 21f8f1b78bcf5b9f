"""A commissioning report as the PDF a building manager signs (zh-CN or English).

The report's facts (`ledger.commissioning`), per bus and per meter, and what the registry said
at upload, through `cloud.reports.pdf.document` (the CJK font subset): the header names the
site, node, time, the key that signed it and its verdict; a last table leaves room for the
building manager's and the installer's signatures. Registers are printed in kWh (exact, from
integer Wh) or litres; read success as "ok/tried (percent)", computed from the integers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cloud.reports import pdf
from cloud.reports.core import Column, Kind

ZH_TITLE = "计量点调试验收报告"
EN: Mapping[str, str] = {
    ZH_TITLE: "Commissioning report",
    "站点": "Site", "节点": "Node", "调试时间": "Taken at", "程序版本": "Version",
    "签名密钥": "Signed by key", "继电器测试": "Relay test", "结论": "Verdict",
    "合格": "clean: nothing to fix", "需整改": "items to fix", "是": "yes", "否": "no",
    "总线": "Bus", "协议": "Protocol", "发现方式": "Discovery", "找到": "Found",
    "缺失": "Missing", "多出": "Extra", "读取成功": "Read success", "说明": "Note",
    "表号": "Meter", "状态": "Status", "商铺": "Shop", "账户": "Account", "读取": "Reads",
    "表底": "Register", "继电器": "Relay", "登记表核对": "Against the registry",
    "登记未找到": "in the registry, not found", "找到未登记": "found, not in the registry",
    "类别": "Kind", "签字": "Signatures", "楼宇管理方": "Building manager",
    "安装调试人员": "Installer", "日期": "Date", "搜索未完成": "search incomplete",
    "已登记表计": "registered meters", "每表读取次数": "Reads per meter",
}  # fmt: skip
WORDS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "found": "正常", "missing": "缺失", "extra": "多出(未声明)", "ok": "分合闸正常",
        "failed": "失败", "no_relay": "无继电器", "not_tested": "未测试", "not_read": "未读到",
        "dlt645-search": "DL/T 645 地址搜索", "modbus-unit-scan": "Modbus 站号扫描",
        "cjt188-address": "CJ/T 188 地址查询", "declared-only": "仅查询已声明表",
    },
    "en": {
        "found": "found", "missing": "missing", "extra": "extra (not declared)",
        "ok": "trip and close confirmed", "failed": "failed", "no_relay": "no relay",
        "not_tested": "not tested", "not_read": "not read",
        "dlt645-search": "DL/T 645 address search", "modbus-unit-scan": "Modbus unit scan",
        "cjt188-address": "CJ/T 188 address query", "declared-only": "declared meters only",
    },
}  # fmt: skip


def _t(text: str, lang: str) -> str:
    return EN.get(text, text) if lang == "en" else text


def _w(code: str, lang: str) -> str:
    return WORDS[lang].get(code, code)


def _rate(ok: int, tried: int) -> str:
    if tried == 0:
        return "-"
    tenths = (ok * 1000 + tried // 2) // tried  # per mille, rounded half up: no floats
    return f"{ok}/{tried} ({tenths // 10}.{tenths % 10}%)"


def _register(value: int | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "Wh":
        whole, rest = divmod(value, 1000)
        return f"{whole:,}.{rest:03d} kWh"
    return f"{value:,} L"


def _columns(labels: Sequence[str], lang: str) -> list[Column]:
    return [Column(f"c{i}", _t(text, lang), Kind.TEXT) for i, text in enumerate(labels)]


def document(
    report: Mapping[str, Any],
    *,
    key_id: str,
    registry: Mapping[str, Any],
    clean: bool,
    generated: dt.datetime,
    lang: str = "zh",
) -> bytes:
    """The PDF of a commissioning report (already verified) in `lang` (zh or en)."""
    yes, no = _t("是", lang), _t("否", lang)
    header = {
        _t("站点", lang): report["site"],
        _t("节点", lang): report["node"],
        _t("调试时间", lang): report["taken_at"],
        _t("程序版本", lang): report["version"],
        _t("签名密钥", lang): key_id,
        _t("每表读取次数", lang): str(report["reads"]),
        _t("继电器测试", lang): yes if report["relay_test"] else no,
        _t("已登记表计", lang): str(registry.get("registered", 0)),
        _t("结论", lang): _t("合格" if clean else "需整改", lang),
    }
    buses = [
        [
            b["bus"],
            b["protocol"],
            _w(b["discovery"], lang),
            str(b["found"]),
            str(b["missing"]),
            str(b["extra"]),
            _rate(b["reads_ok"], b["reads_tried"]),
            "; ".join(
                x for x in ("" if b["complete"] else _t("搜索未完成", lang), b["error"]) if x
            ),
        ]
        for b in report["buses"]
    ]
    meters = [
        [
            m["address"],
            m["bus"],
            _w(m["status"], lang),
            m["shop"] or "-",
            _rate(m["reads_ok"], m["reads_tried"]),
            _register(m["register"], m["unit"]),
            _w(m["relay"], lang),
            m["relay_detail"] if m["relay"] == "failed" else m["error"],
        ]
        for m in report["meters"]
    ]
    sections = [
        (
            _t("总线", lang),
            _columns(
                ("总线", "协议", "发现方式", "找到", "缺失", "多出", "读取成功", "说明"), lang
            ),
            buses,
        ),
        (
            _t("表号", lang),
            _columns(("表号", "总线", "状态", "商铺", "读取", "表底", "继电器", "说明"), lang),
            meters,
        ),
    ]
    differences = [
        [_t(label, lang), d["bus"], d["address"]]
        for key, label in (("missing", "登记未找到"), ("unknown", "找到未登记"))
        for d in registry.get(key, [])
    ]
    if differences:
        sections.append(
            (_t("登记表核对", lang), _columns(("类别", "总线", "表号"), lang), differences)
        )
    sections.append(
        (
            _t("签字", lang),
            _columns(("楼宇管理方", "安装调试人员", "日期"), lang),
            [[" " * 30, " " * 30, " " * 16]],
        )
    )
    return pdf.document(_t(ZH_TITLE, lang), header, sections, generated=generated, lang=lang)
