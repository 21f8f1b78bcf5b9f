"""Excel exports (XlsxWriter in constant-memory mode: each row goes to a temporary file as it is
written, so a year of rows streams through in constant memory).

Cells are typed: Wh and counts are integers, fen are shown as yuan (`fen / 100` computed as a
`Decimal`, so 12345 fen is exactly 123.45, with the number format `#,##0.00`), times are
datetimes in the site's zone (Excel has no zones), rates percentages. The header row is bold
and frozen (pane `A2`), the table has an auto filter, the columns a width fitted to their
labels, and the last row holds the real totals (sums of the integers, not of floats). Text is
always written as text (`write_string`), never read as a formula or a number.

Rows are sequences of values in the columns' order (`cloud.reports.core.stream` yields them
so, straight from the cursor); `rows_of` cuts mappings (a statement's sections) to that shape.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from xlsxwriter import Workbook
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from cloud.chains.rollups import SITE_ZONE
from cloud.reports.core import Column, Kind, Spec

YUAN = "#,##0.00"
WH = "#,##0"
TIME = "yyyy-mm-dd hh:mm:ss"
DATE = "yyyy-mm-dd"
RATE = "0.00%"
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FORMATS = {Kind.FEN: YUAN, Kind.INT: WH, Kind.WH: WH, Kind.TIME: TIME, Kind.DATE: DATE,
            Kind.RATE: RATE}  # fmt: skip
_WIDTHS = {Kind.FEN: 14, Kind.INT: 14, Kind.WH: 14, Kind.TIME: 20, Kind.DATE: 12, Kind.RATE: 11}
_SHEET_NAME = re.compile(r"[\\/*?:\[\]]")  # not allowed in a sheet's name


def yuan(fen: int) -> Decimal:
    """Integer fen as exact yuan."""
    return Decimal(fen) / 100


def cell_value(column: Column, value: Any) -> Any:
    """A stored value as the typed value its cell holds."""
    if value is None:
        return None
    if column.kind is Kind.FEN:
        return yuan(int(value))
    if column.kind in {Kind.INT, Kind.WH}:
        return int(value)
    if column.kind is Kind.RATE:
        return float(value)
    if column.kind is Kind.TIME and isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(SITE_ZONE).replace(tzinfo=None)
    if column.kind is Kind.DATE and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value if isinstance(value, (int, float, dt.date)) else str(value)


Put = Callable[[int, int, Any], None]


def _putter(sheet: Worksheet, column: Column, style: Format | None) -> Put:
    """Writes one stored value of `column` as its typed cell (nothing for None). Numbers and
    text, nearly every cell of an export, go straight to their writer, chosen once per
    column; the rest go through `cell_value`."""
    number, string = sheet.write_number, sheet.write_string

    def put(row: int, col: int, value: Any) -> None:
        value = cell_value(column, value)
        if value is None:
            return
        if isinstance(value, str):
            string(row, col, value, style)
        elif isinstance(value, dt.date):
            sheet.write_datetime(row, col, value, style)
        else:
            number(row, col, value, style)

    def put_int(row: int, col: int, value: Any) -> None:
        if value is not None:
            number(row, col, int(value), style)

    def put_fen(row: int, col: int, value: Any) -> None:
        if value is not None:
            number(row, col, yuan(int(value)), style)

    def put_text(row: int, col: int, value: Any) -> None:
        if value.__class__ is str:
            string(row, col, value, style)
        else:
            put(row, col, value)

    fast = {Kind.INT: put_int, Kind.WH: put_int, Kind.FEN: put_fen, Kind.TEXT: put_text}
    return fast.get(column.kind, put)


Sheet = tuple[str, Sequence[Column], Iterable[Sequence[Any]], bool]  # name, …, totals row?


def rows_of(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> Iterator[list[Any]]:
    """Mappings as rows of values in the columns' order."""
    keys = [c.key for c in columns]
    for row in rows:
        yield [row[k] for k in keys]


def workbook(spec: Spec, rows: Iterable[Sequence[Any]]) -> bytes:
    """A report as an .xlsx file, with a totals row summing the rows written."""
    return sheets([(spec.name, spec.columns, rows, True)])


def sheets(contents: Sequence[Sheet]) -> bytes:
    """An .xlsx file of several sheets (a statement's sections)."""
    out = io.BytesIO()
    book = Workbook(out, {"constant_memory": True})
    styles: dict[tuple[str | None, bool], Format] = {}

    def style(number_format: str | None, bold: bool = False) -> Format:
        key = (number_format, bold)
        if key not in styles:
            styles[key] = book.add_format({"num_format": number_format or "General",
                                           "bold": bold})  # fmt: skip
        return styles[key]

    for name, columns, rows, with_totals in contents:
        sheet = book.add_worksheet(_SHEET_NAME.sub("-", name)[:31] or "sheet")
        _write(sheet, columns, rows, with_totals, style)
    book.close()
    return out.getvalue()


def _write(
    sheet: Worksheet,
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    with_totals: bool,
    style: Callable[..., Format],
) -> None:
    sheet.freeze_panes(1, 0)
    bold = style(None, True)
    for i, column in enumerate(columns):
        sheet.set_column(i, i, max(_WIDTHS.get(column.kind, 14), 2 * len(column.label) + 2))
        sheet.write_string(0, i, column.label, bold)
    puts = [_putter(sheet, c, style(_FORMATS.get(c.kind))) for c in columns]
    summed = [i for i, c in enumerate(columns) if c.total]
    sums = dict.fromkeys(summed, 0)
    count = 0
    for count, row in enumerate(rows, start=1):
        for i in summed:
            sums[i] += int(row[i] or 0)
        for i, (put, value) in enumerate(zip(puts, row, strict=True)):
            put(count, i, value)
    sheet.autofilter(0, 0, count, len(columns) - 1)
    if not with_totals:
        return
    last = count + 1
    sheet.write_string(last, 0, "合计", bold)
    for i in summed[1:] if summed[:1] == [0] else summed:
        column = columns[i]
        _putter(sheet, column, style(_FORMATS.get(column.kind), True))(last, i, sums[i])
