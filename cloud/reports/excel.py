"""Excel exports (openpyxl, write-only mode so a year of rows streams through).

Cells are typed: Wh and counts are integers, fen are shown as yuan (`fen / 100` computed as a
`Decimal`, so 12345 fen is exactly 123.45, with the number format `#,##0.00`), times are
datetimes in the site's zone (Excel has no zones), rates percentages. The header row is bold
and frozen (pane `A2`), the table has an auto filter, the columns a width fitted to their
labels, and the last row holds the real totals (sums of the integers, not of floats).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

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
_BOLD = Font(bold=True)
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


def _cell(sheet: WriteOnlyWorksheet, column: Column, value: Any, *, bold: bool = False) -> Any:
    cell = WriteOnlyCell(sheet, value=value)
    if column.kind in _FORMATS:
        cell.number_format = _FORMATS[column.kind]
    if bold:
        cell.font = _BOLD
    return cell


Sheet = tuple[str, Sequence[Column], Iterable[Mapping[str, Any]], bool]  # name, …, totals row?


def workbook(spec: Spec, rows: Iterable[Mapping[str, Any]]) -> bytes:
    """A report as an .xlsx file, with a totals row summing the rows written."""
    return sheets([(spec.name, spec.columns, rows, True)])


def sheets(contents: Sequence[Sheet]) -> bytes:
    """An .xlsx file of several sheets (a statement's sections)."""
    book = Workbook(write_only=True)
    for name, columns, rows, with_totals in contents:
        title = _SHEET_NAME.sub("-", name)[:31] or "sheet"
        _write(book.create_sheet(title=title), columns, rows, with_totals)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _write(
    sheet: WriteOnlyWorksheet,
    columns: Sequence[Column],
    rows: Iterable[Mapping[str, Any]],
    with_totals: bool,
) -> None:
    sheet.freeze_panes = "A2"
    for i, column in enumerate(columns, start=1):
        width = max(_WIDTHS.get(column.kind, 14), 2 * len(column.label) + 2)
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.append([_cell(sheet, Column(c.key, c.label), c.label, bold=True) for c in columns])
    sums = {c.key: 0 for c in columns if c.total}
    count = 0
    for row in rows:
        count += 1
        for key in sums:
            sums[key] += int(row[key] or 0)
        sheet.append([_cell(sheet, c, cell_value(c, row[c.key])) for c in columns])
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{count + 1}"
    if not with_totals:
        return
    totals_row: list[Any] = [_cell(sheet, Column("", ""), "合计", bold=True)]
    for column in columns[1:]:
        value = cell_value(column, sums[column.key]) if column.total else None
        totals_row.append(_cell(sheet, column, value, bold=True) if column.total else None)
    sheet.append(totals_row)
