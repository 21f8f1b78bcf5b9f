"""Printable reports (fpdf2): a title, the filters, a table whose header repeats on every page,
a totals row, and page numbers, in Chinese with Noto Sans SC embedded as a subset
(`cloud.reports.fonts`).

The whole document's text is laid out first, so the font subset holds exactly its characters.
A PDF is for reading and printing: at most `MAX_ROWS` rows (the Excel export has them all).
Values are printed for people: energy in kWh (exact, from the integer Wh), coded values in
words (`cloud.reports.words`: 现金, 已入账, 峰 …), and every value whole — columns are as wide
as their widest value and the table's type shrinks (down to `MIN_SIZE`) until they fit.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fpdf import FPDF

from cloud.chains.rollups import SITE_ZONE
from cloud.reports.core import Column, Kind, Spec
from cloud.reports.excel import yuan
from cloud.reports.words import in_lang, word

MAX_ROWS = 20_000  # about 300 pages
MEDIA_TYPE = "application/pdf"
FAMILY = "noto-sc"
_LINE = 5.0  # mm per table row
SIZE, MIN_SIZE = 8.0, 5.0  # the table's type, points
_RIGHT = {Kind.FEN, Kind.INT, Kind.WH, Kind.RATE}
_MEASURED = 20  # the longest texts of a column measured for its width


def text_of(column: Column, value: Any, lang: str = "zh") -> str:
    """A value as printed: yuan with thousands separators, kWh, local times, words."""
    if value is None:
        return ""
    if column.kind is Kind.FEN:
        return f"{yuan(int(value)):,.2f}"
    if column.kind is Kind.INT:
        return f"{int(value):,}"
    if column.kind is Kind.WH:
        whole, rest = divmod(abs(int(value)), 1000)
        return f"{'-' if int(value) < 0 else ''}{whole:,}.{rest:03d}"
    if column.kind is Kind.RATE:
        return f"{float(value):.2%}"
    if column.kind is Kind.TIME and isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(SITE_ZONE).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return in_lang(word(column.key, str(value), lang), lang)


def label(column: Column, lang: str = "zh") -> str:
    """A column's printed label, in `lang`: energy is printed in kWh."""
    text = in_lang(column.label, lang)
    return text.replace("(Wh)", "(kWh)") if column.kind is Kind.WH else text


_FOOTER = {"zh": "第 {page} 页 / 共 {{nb}} 页", "en": "Page {page} of {{nb}}"}
_FILTERS = {"zh": "筛选: ", "en": "Filters: "}
_GENERATED = {"zh": "生成时间: ", "en": "Generated: "}
_CUT = {"zh": "仅打印前 {rows} 行, 合计为全部行; 完整明细请导出 Excel",
        "en": "only the first {rows} rows are printed, the totals are of every row; the Excel "
              "export has them all"}  # fmt: skip


class _Document(FPDF):
    footer_text = _FOOTER["zh"]

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FAMILY, size=8)
        self.cell(0, 6, self.footer_text.format(page=self.page_no()), align="C")


def document(
    title: str,
    filters: Mapping[str, str],
    sections: Sequence[tuple[str, Sequence[Column], Sequence[Sequence[str]]]],
    *,
    generated: dt.datetime,
    lang: str = "zh",
) -> bytes:
    """A PDF of `sections` (heading, columns, rows of printed text) under `title`, its fixed
    texts in `lang` (the rows are printed already: `text_of`)."""
    title = in_lang(title, lang)
    filters = {in_lang(k, lang): in_lang(v, lang) for k, v in filters.items()}
    sections = [(in_lang(h, lang), columns, rows) for h, columns, rows in sections]
    filter_line, stamp = _filter_line(filters, lang), _generated(generated, lang)
    lines = [title, filter_line, stamp, _FOOTER.get(lang, _FOOTER["zh"]), "{nb}"]
    for heading, columns, rows in sections:
        lines += [heading, *(label(c, lang) for c in columns)]
        lines += [cell for row in rows for cell in row]
    widest = max((len(columns) for _, columns, _ in sections), default=1)
    pdf = _Document(orientation="L" if widest > 6 else "P", unit="mm", format="A4")
    pdf.footer_text = _FOOTER.get(lang, _FOOTER["zh"])
    pdf.set_title(title)
    pdf.set_creator("Voltbook")
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(auto=True, margin=15)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "noto-sc-subset.ttf"
        from cloud.reports.fonts import truetype_subset  # fontTools: only when printing

        path.write_bytes(truetype_subset(lines))
        pdf.add_font(FAMILY, "", str(path))
        pdf.add_page()
        pdf.set_font(FAMILY, size=16)
        pdf.cell(0, 10, title, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FAMILY, size=9)
        pdf.multi_cell(0, 5, filter_line, new_x="LMARGIN", new_y="NEXT")
        pdf.cell(0, 5, stamp, new_x="LMARGIN", new_y="NEXT")
        for heading, columns, rows in sections:
            _table(pdf, heading, [label(c, lang) for c in columns], columns, rows)
        return bytes(pdf.output())


def _filter_line(filters: Mapping[str, str], lang: str) -> str:
    shown = "; ".join(f"{k}: {v}" for k, v in filters.items())
    return _FILTERS.get(lang, _FILTERS["zh"]) + shown if filters else ""


def _generated(now: dt.datetime, lang: str) -> str:
    return _GENERATED.get(lang, _GENERATED["zh"]) + now.astimezone(SITE_ZONE).strftime(
        "%Y-%m-%d %H:%M"
    )


def _table(
    pdf: FPDF,
    heading: str,
    labels: Sequence[str],
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
) -> None:
    """Rows of single-line cells (fpdf2's `table()` lays out ten times slower), the header
    drawn again at the top of every page."""
    pdf.ln(3)
    if heading:
        pdf.set_font(FAMILY, size=11)
        pdf.cell(0, 7, heading, new_x="LMARGIN", new_y="NEXT")
    size, widths = _layout(pdf, labels, rows)
    pdf.set_font(FAMILY, size=size)
    aligns = ["R" if c.kind in _RIGHT else "L" for c in columns]
    limit = pdf.h - pdf.b_margin - _LINE

    def header() -> None:
        pdf.set_fill_color(225, 225, 225)
        for width, text, align in zip(widths, labels, aligns, strict=True):
            pdf.cell(width, _LINE, text, border="B", align=align, fill=True)
        pdf.ln(_LINE)

    header()
    for row in rows:
        if pdf.get_y() > limit:
            pdf.add_page()
            pdf.set_font(FAMILY, size=size)
            header()
        for width, text, align in zip(widths, row, aligns, strict=True):
            pdf.cell(width, _LINE, _fit(pdf, text, width), align=align)
        pdf.ln(_LINE)


def _layout(
    pdf: FPDF, labels: Sequence[str], rows: Sequence[Sequence[str]]
) -> tuple[float, list[float]]:
    """The type size and column widths that print every value whole: each column as wide as
    its widest text, the type shrunk until the table fits the page, the spare width shared."""
    pdf.set_font(FAMILY, size=SIZE)
    natural = []
    for index, text in enumerate(labels):
        longest = heapq.nlargest(_MEASURED, (row[index] for row in rows), key=len)
        natural.append(max(pdf.get_string_width(t) for t in [text, *longest]) + 2)
    needed = sum(natural)
    size = max(MIN_SIZE, min(SIZE, SIZE * pdf.epw / needed))
    widths = [w * size / SIZE for w in natural]
    spare = (pdf.epw - sum(widths)) / len(widths)
    return size, [w + max(spare, 0.0) for w in widths]


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """Cut a text that would overflow its cell, only when even `MIN_SIZE` type cannot hold the
    table (the Excel export has it whole)."""
    if pdf.get_string_width(text) <= width - 1:
        return text
    while text and pdf.get_string_width(text + "…") > width - 1:
        text = text[:-1]
    return text + "…"


def report(
    spec: Spec,
    rows: Iterable[Sequence[Any]],
    totals: Mapping[str, int],
    *,
    generated: dt.datetime,
    lang: str = "zh",
) -> bytes:
    """A report (`Spec`) as a PDF, with its totals row, in `lang`."""
    columns = spec.columns
    head = itertools.islice(rows, MAX_ROWS + 1)
    printed = [[text_of(c, value, lang) for c, value in zip(columns, row, strict=True)]
               for row in head]  # fmt: skip
    filters = dict(spec.filters)
    if len(printed) > MAX_ROWS:
        del printed[MAX_ROWS:]
        filters["说明"] = _CUT.get(lang, _CUT["zh"]).format(rows=MAX_ROWS)
    total = in_lang("合计", lang)
    total_row = [total if i == 0 else (text_of(c, totals[c.key], lang) if c.total else "")
                 for i, c in enumerate(columns)]  # fmt: skip
    return document(spec.title, filters, [("", columns, [*printed, total_row])],
                    generated=generated, lang=lang)  # fmt: skip
