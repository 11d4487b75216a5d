"""Seed 003's 评估通报表 as an Excel workbook (openpyxl), in the annex's column order."""

from __future__ import annotations

import io
from datetime import datetime

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from rating_core.cell_text import as_text
from rating_core.scoring import COUNT_NAMES, Scheme, ScoringRules, UnitScore, rounded

COUNT_HEADINGS = {
    "A": "季度应评价数 A", "M": "季度总评价数 M", "P": "主动评价数 P", "I": "主动好评数 I", "D": "差评总数 D",
    "T": "有效差评数 T", "B": "无效差评数 B", "N1": "差评回复数 N1", "N2": "差评整改数 N2", "N3": "整改满意数 N3",
}
RATE_HEADINGS = {
    "rating_rate": "总评价率 M/A", "active_rate": "主动评价率 P/M", "good_rate": "好评率 (1-T/M)%",
    "active_good_rate": "主动评价好评率 I/P", "reply_rate": "差评回复率 R1=N1/D", "rectify_rate": "差评整改率 R2=N2/T",
    "satisfied_rate": "整改满意率 R3=N3/N2",
}


def write_report(scores: list[UnitScore], scheme: Scheme, rules: ScoringRules, title: str, unit_heading: str,
                 generated_at: datetime) -> bytes:
    """The table, best score first; rates as percentages, "-" where the denominator is 0."""
    book = Workbook()
    sheet = book.active
    sheet.title = "评估通报表"
    headings = ["序号", unit_heading, "人口数", *(COUNT_HEADINGS[c] for c in COUNT_NAMES),
                *(RATE_HEADINGS.get(r.code, r.name) for r in rules.rates), "加减分", "综合得分"]
    sheet.append([title])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(headings))
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    # Excel has no time zones: the local time, naive, says when the figures were taken.
    sheet.append([f"{scheme.name}；生成时间", generated_at.replace(tzinfo=None)])
    sheet["B2"].number_format = "yyyy-mm-dd hh:mm"
    sheet.append(headings)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for place, score in enumerate(scores, 1):
        rates: list[object] = [float(rounded(score.rates[r.code].value, 4)) if score.rates[r.code].defined else "-"
                               for r in rules.rates]
        sheet.append([place, score.unit.name, None, *(score.unit.counts[c] for c in COUNT_NAMES), *rates,
                      float(rounded(score.adjustment_points)), float(rounded(score.total))])
        row = sheet.max_row
        as_text(sheet.cell(row=row, column=2))  # the unit's name comes from outside: text, never a formula
        first_rate = 4 + len(COUNT_NAMES)
        for column in range(first_rate, first_rate + len(rules.rates)):
            sheet.cell(row=row, column=column).number_format = "0.00%"
    sheet.column_dimensions["B"].width = 18
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
