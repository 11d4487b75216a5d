"""Seed 003's 评估通报表 as an Excel workbook, laid out as annexes 1 and 2 print it.

A supervisor sends this file upward, prints it and pastes from it, so it is the
annex's table: the ten counts and seven rates in the annex's order under its
formula headings, then every score item's points, the 名次 of a ranked item,
the deduction, the 加减分 with its reasons and the 综合得分; ruled, and on A4
landscape with the heading rows repeated on every page. Units that are not
ranked follow, apart, each with the reason. A second sheet keeps every 加减分
entry, withdrawn ones too, so that any figure sent upward can be explained; a
third explains the columns and the scheme.

Every value is written through :func:`_put`, which types strings as text: unit
names, reasons and user names come from outside and must never run as formulas.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.page import PageMargins
from openpyxl.worksheet.worksheet import Worksheet

from rating_core.reports.cell_text import as_text, file_name, printable
from rating_core.reports.figure_adjustments import statuses
from rating_core.reports.figure_counts import COUNTS
from rating_core.reports.figures import FiguresTable
from rating_core.reports.scoring import (
    RateRule,
    Scheme,
    ScoringRules,
    UnitScore,
    describe,
    formula,
    plain_number,
    rounded,
)
from rating_core.store.models import FigureAdjustment

TABLE_SHEET = "评估通报表"
HISTORY_SHEET = "加减分记录"
NOTES_SHEET = "说明"
HEADER_ROWS = (3, 4)  # a group heading over an item heading
FIRST_DATA_ROW = 5
SCORES_GROUP = "各项得分"

# The annex's own headings for its seven rates; a deployment's other rates get theirs from the formula.
RATE_HEADINGS = {
    "rating_rate": "总评价率 M/A", "active_rate": "主动评价率 P/M", "good_rate": "好评率 (1-T/M)%",
    "active_good_rate": "主动评价好评率 I/P", "reply_rate": "差评回复率 R1=N1/D", "rectify_rate": "差评整改率 R2=N2/T",
    "satisfied_rate": "整改满意率 R3=N3/N2",
}

PERCENT, POINTS, WHOLE, WHEN = "0.00%", "0.00", "0", "yyyy-mm-dd hh:mm"
SIGNED = "+0.00;-0.00;0.00"
_THIN = Side(style="thin")
BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
HEADER_FILL = PatternFill("solid", fgColor="D9D9D9")
APART_FILL = PatternFill("solid", fgColor="F2F2F2")
HEADING = Alignment(horizontal="center", vertical="center", wrap_text=True)
WRAPPED = Alignment(horizontal="left", vertical="center", wrap_text=True)
FOOTER = "第 &P 页，共 &N 页"


@dataclass(frozen=True)
class Line:
    """A unit's row: its score and its place by 综合得分, None for a unit listed apart."""

    score: UnitScore
    place: int | None


@dataclass(frozen=True)
class Column:
    """One column of the table: its heading, the group heading above it ("" spans both rows), its value."""

    heading: str
    value: Callable[[Line], Any]
    group: str = ""
    width: float = 9
    number_format: str = "General"
    scored: bool = False  # a score, left empty for a unit that is not ranked
    wrap: bool = False  # text that may run long: wrapped, not cut off


def report_filename(period_label: str, unit_heading: str) -> str:
    """The file's Chinese name, e.g. 2026Q4各坐席工号好差评评估通报表.xlsx.

    A slash (班组/队列) would make a folder of the name, so it becomes 、; other
    characters no file system takes become _.
    """
    name = f"{period_label}各{unit_heading.replace('/', '、')}好差评评估通报表.xlsx"
    return file_name(name)


def write_report(table: FiguresTable, scheme: Scheme, rules: ScoringRules, title: str, unit_heading: str,
                 generated_at: datetime) -> bytes:
    """The workbook: the 通报表, the 加减分 entries and the notes.

    ``generated_at`` is aware; Excel has no time zones, so it and every entry's
    times are written as naive local times of its zone.
    """
    book = Workbook()
    sheet = book.active
    sheet.title = TABLE_SHEET
    columns = table_columns(table, scheme, rules, unit_heading)
    _write_title(sheet, title, scheme.name, generated_at, len(columns))
    _write_header(sheet, columns)
    row = FIRST_DATA_ROW
    for score, place in zip(table.ranked, table.places()):  # the page's places, ties shared
        _write_line(sheet, row, columns, Line(score, place))
        row += 1
    if table.apart:
        row = _write_apart(sheet, row, columns, table, unit_heading)
    _rule(sheet, HEADER_ROWS[0], row - 1, len(columns))
    for index, column in enumerate(columns, 1):
        sheet.column_dimensions[get_column_letter(index)].width = column.width
    sheet.freeze_panes = f"C{FIRST_DATA_ROW}"  # below the headings, right of the unit's name
    _print_setup(sheet, f"{HEADER_ROWS[0]}:{HEADER_ROWS[-1]}")
    _write_history(book.create_sheet(HISTORY_SHEET), table.history, unit_heading, generated_at.tzinfo)
    _write_notes(book.create_sheet(NOTES_SHEET), scheme, rules)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def table_columns(table: FiguresTable, scheme: Scheme, rules: ScoringRules, unit_heading: str) -> list[Column]:
    """The annex's columns in its order, then one or two per score item of ``scheme``."""
    names = {rule.code: rule.name for rule in rules.rates}
    columns = [Column("名次", lambda line: line.place, width=6),
               Column(unit_heading, lambda line: line.score.unit.name, width=18, wrap=True)]
    columns += [Column(f"{count.name} {count.code}", _count(count.code), "统计数", 8, WHOLE) for count in COUNTS]
    columns += [Column(rate_heading(rule), _rate(rule.code), "比率", 10, PERCENT) for rule in rules.rates]
    columns += [Column(f"{names[item.rate]}得分（×{plain_number(item.weight)}）", _points(item.rate), SCORES_GROUP, 10,
                       POINTS, True) for item in scheme.weighted]
    for ranked in scheme.ranked:
        columns += [Column(f"{names[ranked.rate]}名次", _place(ranked.rate), SCORES_GROUP, 8, WHOLE, True),
                    Column(f"{names[ranked.rate]}得分", _points(ranked.rate), SCORES_GROUP, 10, POINTS, True)]
    if scheme.deduction is not None:
        columns.append(Column("扣分", lambda line: _figure(line.score.deduction), SCORES_GROUP, 8, POINTS, True))
    columns += [
        Column("加减分", lambda line: _figure(line.score.adjustment_points), SCORES_GROUP, 8, POINTS, True),
        Column("加减分说明", lambda line: table.reasons(line.score.unit.name) or None, width=30, scored=True,
               wrap=True),
        Column("综合得分", lambda line: _figure(line.score.total), width=10, number_format=POINTS, scored=True),
    ]
    return columns


def rate_heading(rule: RateRule) -> str:
    """The annex's heading of a rate, formula included; for a rate of the deployment's own, its formula."""
    if rule.code in RATE_HEADINGS:
        return RATE_HEADINGS[rule.code]
    return f"{rule.name} {formula(rule)}"


def _count(code: str) -> Callable[[Line], Any]:
    return lambda line: line.score.unit.counts[code]


def _rate(code: str) -> Callable[[Line], Any]:
    """A rate as a number to four places (0.00 %), or "-" where its denominator is 0, as the annex prints it."""
    def value(line: Line) -> Any:
        rate = line.score.rates[code]
        return float(rounded(rate.value, 4)) if rate.defined else "-"
    return value


def _points(code: str) -> Callable[[Line], Any]:
    return lambda line: _figure(line.score.points[code])


def _place(code: str) -> Callable[[Line], Any]:
    return lambda line: line.score.ranks[code]


def _figure(value: Decimal) -> float:
    """Points as printed: rounded half up to the cent, like the web page, before Excel sees them."""
    return float(rounded(value))


def _put(sheet: Worksheet, row: int, column: int, value: Any, number_format: str | None = None) -> Cell:
    """Write one cell; a string is typed as text, whatever it begins with, and loses the control characters
    XML cannot hold (names and reasons come from outside)."""
    cell = sheet.cell(row=row, column=column, value=printable(value))
    as_text(cell)
    if number_format:
        cell.number_format = number_format
    return cell


def _merge(sheet: Worksheet, row: int, first: int, last: int, end_row: int | None = None) -> None:
    if (first, row) != (last, end_row or row):
        sheet.merge_cells(start_row=row, start_column=first, end_row=end_row or row, end_column=last)


def _write_title(sheet: Worksheet, title: str, scheme_name: str, generated_at: datetime, width: int) -> None:
    """Row 1 the title across the table; row 2 the scheme on the left, when the figures were taken on the right."""
    _put(sheet, 1, 1, title).font = Font(bold=True, size=16)
    sheet["A1"].alignment = Alignment(horizontal="center", vertical="center")
    _merge(sheet, 1, 1, width)
    sheet.row_dimensions[1].height = 30
    _put(sheet, 2, 1, f"计分规则：{scheme_name}")
    _merge(sheet, 2, 1, width - 4)
    _put(sheet, 2, width - 3, "生成时间").alignment = Alignment(horizontal="right")
    _merge(sheet, 2, width - 3, width - 2)
    when = _put(sheet, 2, width - 1, generated_at.replace(tzinfo=None), WHEN)
    when.alignment = Alignment(horizontal="left")
    _merge(sheet, 2, width - 1, width)


def _write_header(sheet: Worksheet, columns: list[Column]) -> None:
    """Two rows: a group heading (统计数, 比率, 各项得分) over its items; a column of no group spans both."""
    top, bottom = HEADER_ROWS
    index = 1
    while index <= len(columns):
        column = columns[index - 1]
        if not column.group:
            _put(sheet, top, index, column.heading)
            _merge(sheet, top, index, index, bottom)
            index += 1
            continue
        last = index
        while last < len(columns) and columns[last].group == column.group:
            last += 1
        _put(sheet, top, index, column.group)
        _merge(sheet, top, index, last)
        for member in range(index, last + 1):
            _put(sheet, bottom, member, columns[member - 1].heading)
        index = last + 1
    for row in HEADER_ROWS:
        for index in range(1, len(columns) + 1):
            cell = sheet.cell(row=row, column=index)
            cell.font, cell.fill, cell.alignment = Font(bold=True), HEADER_FILL, HEADING
    sheet.row_dimensions[top].height = 20
    sheet.row_dimensions[bottom].height = 48


def _write_line(sheet: Worksheet, row: int, columns: list[Column], line: Line) -> None:
    """One unit's row; a unit listed apart gets its counts and rates only."""
    for index, column in enumerate(columns, 1):
        if column.scored and line.place is None:
            continue
        cell = _put(sheet, row, index, column.value(line), column.number_format)
        if column.wrap:
            cell.alignment = WRAPPED


def _write_apart(sheet: Worksheet, row: int, columns: list[Column], table: FiguresTable, unit_heading: str) -> int:
    """The units that are not ranked, under a heading that says why; each one's reason over its score columns."""
    because = (f"未记录{unit_heading}，或评价数少于 {table.min_ratings} 条" if table.min_ratings
               else f"未记录{unit_heading}")
    heading = _put(sheet, row, 1, f"以下各行不参与排名（{because}）")
    heading.font, heading.alignment = Font(bold=True), Alignment(horizontal="left", vertical="center")
    _merge(sheet, row, 1, len(columns))
    for index in range(1, len(columns) + 1):
        sheet.cell(row=row, column=index).fill = APART_FILL
    first_score = next(index for index, column in enumerate(columns, 1) if column.scored)
    for score, reason in table.apart:
        row += 1
        _write_line(sheet, row, columns, Line(score, None))
        _put(sheet, row, first_score, reason).alignment = WRAPPED
        _merge(sheet, row, first_score, len(columns))
    return row + 1


def _rule(sheet: Worksheet, first_row: int, last_row: int, width: int) -> None:
    """Thin borders on every cell of the table, merged ones included, so the printed grid is whole."""
    for row in sheet.iter_rows(min_row=first_row, max_row=last_row, min_col=1, max_col=width):
        for cell in row:
            cell.border = BORDER


def _print_setup(sheet: Worksheet, title_rows: str | None = None) -> None:
    """A4 landscape, as wide as one page and as long as it needs, headings on every page, pages numbered."""
    sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToWidth = 1
    sheet.page_setup.fitToHeight = 0
    sheet.sheet_properties.pageSetUpPr.fitToPage = True
    if title_rows:
        sheet.print_title_rows = title_rows
    sheet.print_options.horizontalCentered = True
    sheet.page_margins = PageMargins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    sheet.oddFooter.center.text = FOOTER


HISTORY_COLUMNS = (  # heading, width, number format
    ("编号", 6, WHOLE), ("", 18, None), ("分值", 8, SIGNED), ("理由", 30, None), ("录入人", 10, None),
    ("录入时间", 16, WHEN), ("状态", 8, None), ("撤销或更正人", 12, None), ("撤销或更正时间", 16, WHEN),
    ("撤销或更正理由", 30, None),
)


def _local(at: datetime | None, zone: tzinfo | None) -> datetime | None:
    """A stored (UTC) time as the wall-clock time of the table's zone, naive: Excel has no time zones."""
    if at is None:
        return None
    return (at.astimezone(zone) if zone and at.tzinfo else at).replace(tzinfo=None)


def _write_history(sheet: Worksheet, entries: list[FigureAdjustment], unit_heading: str, zone: tzinfo | None) -> None:
    """Every 加减分 entry of the table in the order made, withdrawn and corrected ones marked, never left out."""
    for index, (heading, width, _format) in enumerate(HISTORY_COLUMNS, 1):
        cell = _put(sheet, 1, index, heading or unit_heading)
        cell.font, cell.fill, cell.alignment = Font(bold=True), HEADER_FILL, HEADING
        sheet.column_dimensions[get_column_letter(index)].width = width
    status = statuses(entries)
    for row, entry in enumerate(entries, 2):
        values = (entry.id, entry.name, float(entry.points), entry.reason, entry.entered_by,
                  _local(entry.entered_at, zone), status[entry.id], entry.withdrawn_by,
                  _local(entry.withdrawn_at, zone), entry.withdrawal_reason)
        for index, (value, (_heading, _width, number_format)) in enumerate(zip(values, HISTORY_COLUMNS), 1):
            _put(sheet, row, index, value, number_format)
        for index in (2, 4, 10):
            sheet.cell(row=row, column=index).alignment = WRAPPED
    _rule(sheet, 1, len(entries) + 1, len(HISTORY_COLUMNS))
    sheet.freeze_panes = "A2"
    _print_setup(sheet, "1:1")


def _write_notes(sheet: Worksheet, scheme: Scheme, rules: ScoringRules) -> None:
    """What each count counts, each rate's formula, and how the scheme makes the points: the table's legend."""
    items = [*describe(scheme, rules), "名次：参与排名的单位按综合得分（保留两位小数）排列，得分相同者名次相同"]
    sections: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = [
        (("代码", "统计数", "统计口径"), [(count.code, count.name, count.population) for count in COUNTS]),
        (("比率", "公式", "分母为 0 时"),
         [(rule.name, formula(rule), f"{rule.denominator} 为 0 时表中记为“-”，按 100% 计分") for rule in rules.rates]),
        (("计分规则", scheme.name), [("", item) for item in items]),
    ]
    _put(sheet, 1, 1, "说明").font = Font(bold=True, size=14)
    row = 3
    for heading, lines in sections:
        for index, text in enumerate(heading, 1):
            cell = _put(sheet, row, index, text)
            cell.font, cell.fill = Font(bold=True), HEADER_FILL
        for line in lines:
            row += 1
            for index, text in enumerate(line, 1):
                _put(sheet, row, index, text or None).alignment = WRAPPED
        row += 2
    for letter, width in zip("ABC", (14, 60, 40)):
        sheet.column_dimensions[letter].width = width
    _print_setup(sheet)
