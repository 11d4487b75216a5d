"""The Excel 通报表 as seed 003's annexes print it, read back cell by cell with openpyxl."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter as letter
from openpyxl.worksheet.worksheet import Worksheet

from rating_core.reports.figures import UNNAMED, FiguresTable, build_table
from rating_core.reports.figures_xlsx import report_filename, write_report
from rating_core.reports.scoring import UnitCounts, describe, load_scoring_rules, rounded, score_units
from rating_core.store.models import FigureAdjustment

ZONE = ZoneInfo("Asia/Shanghai")
RULES = load_scoring_rules()
DISTRICT = RULES.scheme("zibo-district")
GENERATED = datetime(2026, 12, 6, 9, 15, tzinfo=ZONE)
LINK = '=HYPERLINK("http://evil.example/","点击查看")'
# The 28 columns of the district scheme: 名次, name, 10 counts, 7 rates, 3 weighted, 名次 + 得分, 扣分, 加减分,
# 加减分说明, 综合得分.
WIDTH = 28


def unit(name: str, A=100, M=100, P=50, I=50, D=0, T=0, B=0, N1=0, N2=0, N3=0) -> UnitCounts:  # noqa: E741 (the 通报表's letters)
    return UnitCounts(name, {"A": A, "M": M, "P": P, "I": I, "D": D, "T": T, "B": B, "N1": N1, "N2": N2, "N3": N3})


def entry(id: int, name: str, points: str, reason: str, **fields: object) -> FigureAdjustment:
    """An entry as the store keeps it (UTC times); ``fields`` withdraw or correct it."""
    made = FigureAdjustment(id=id, period="2026Q4", dimension="hotline", name=name, points=Decimal(points),
                            reason=reason, entered_by="boss",
                            entered_at=datetime(2026, 12, 1, 2, 30, tzinfo=timezone.utc), withdrawn_at=None,
                            withdrawn_by=None, withdrawal_reason=None, corrects_id=None)
    for key, value in fields.items():
        setattr(made, key, value)
    return made


HISTORY = [
    entry(1, "张店区", "1.50", "创新突破"),
    entry(2, "博山区", "-2", "数据不实", withdrawn_at=datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc),
          withdrawn_by="chief", withdrawal_reason="核实后数据属实"),
    entry(3, "张店区", "5", "宣传推动", withdrawn_at=datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc),
          withdrawn_by="boss", withdrawal_reason="按实际次数"),
    entry(4, "张店区", "3", "按实际次数", corrects_id=3),
    entry(5, LINK, "-1", "=1+1"),
]


def table_of(units: list[UnitCounts], history: list[FigureAdjustment], min_ratings: int = 10) -> FiguresTable:
    """What rating_core.reports.figures.figures_table makes of counts and entries, without a database."""
    return build_table(units, history, DISTRICT.model_copy(update={"min_ratings": min_ratings}), RULES, "hotline")


TABLE = table_of([unit("张店区", A=1000, M=950, P=600, I=598, D=10, T=2, B=8, N1=8, N2=1, N3=1),
                  unit("博山区", A=800, M=780, P=700, I=690, D=5, T=1, B=4, N1=5, N2=1, N3=1),
                  unit(LINK, A=50, M=40, P=20, I=20),
                  unit("周村区", A=8, M=5, P=5, I=5),
                  unit(UNNAMED, A=3, M=3, P=0, I=0)], HISTORY)


@pytest.fixture(scope="module")
def data() -> bytes:
    return write_report(TABLE, DISTRICT, RULES, "2026Q4各热线“好差评”评估通报表", "热线", GENERATED)


@pytest.fixture(scope="module")
def sheet(data: bytes) -> Worksheet:
    return load_workbook(io.BytesIO(data))["评估通报表"]


def row_of(sheet: Worksheet, name: str) -> list[object]:
    [row] = [[cell.value for cell in row] for row in sheet.iter_rows(min_row=5) if row[1].value == name]
    return row


def test_the_title_the_scheme_and_the_time_taken(sheet: Worksheet) -> None:
    assert sheet["A1"].value == "2026Q4各热线“好差评”评估通报表" and sheet["A1"].font.b and sheet["A1"].font.sz >= 14
    assert sheet["A1"].alignment.horizontal == "center"
    assert f"A1:{letter(WIDTH)}1" in {str(merged) for merged in sheet.merged_cells.ranges}
    assert sheet["A2"].value == f"计分规则：{DISTRICT.name}"
    when = sheet.cell(row=2, column=WIDTH - 1)
    assert when.value == datetime(2026, 12, 6, 9, 15) and when.number_format == "yyyy-mm-dd hh:mm"


def test_the_headings_follow_the_annex_then_each_score_item(sheet: Worksheet) -> None:
    top = [cell.value for cell in sheet[3]]
    bottom = [cell.value for cell in sheet[4]]
    assert top[:3] == ["名次", "热线", "统计数"] and top[12] == "比率" and top[19] == "各项得分"
    assert bottom[2:12] == ["应评价数 A", "总评价数 M", "主动评价数 P", "主动好评数 I", "差评总数 D", "有效差评数 T",
                            "无效差评数 B", "差评回复数 N1", "差评整改数 N2", "整改满意数 N3"]
    assert bottom[12:19] == ["总评价率 M/A", "主动评价率 P/M", "好评率 (1-T/M)%", "主动评价好评率 I/P",
                             "差评回复率 R1=N1/D", "差评整改率 R2=N2/T", "整改满意率 R3=N3/N2"]
    assert bottom[19:26] == ["总评价率得分（×40）", "好评率得分（×20）", "主动评价好评率得分（×20）",
                             "主动评价率名次", "主动评价率得分", "扣分", "加减分"]
    assert top[26:] == ["加减分说明", "综合得分"] and len(top) == WIDTH
    merged = {str(merged) for merged in sheet.merged_cells.ranges}
    assert {"A3:A4", "B3:B4", "C3:L3", "M3:S3", "T3:Z3", "AA3:AA4", "AB3:AB4"} <= merged
    assert sheet["C4"].fill.fgColor.rgb.endswith("D9D9D9") and sheet["M4"].alignment.wrap_text


def test_a_ranked_row_prints_every_item_rounded_as_scored(sheet: Worksheet) -> None:
    score = next(s for s in TABLE.ranked if s.unit.name == "张店区")
    row = row_of(sheet, "张店区")
    assert row[2:12] == [1000, 950, 600, 598, 10, 2, 8, 8, 1, 1]
    assert row[12] == float(rounded(Decimal(950) / 1000, 4)) and row[17] == 0.5
    figures = [rounded(score.points[code]) for code in ("rating_rate", "good_rate", "active_good_rate")]
    assert row[19:22] == [float(value) for value in figures]
    assert row[22] == score.ranks["active_rate"] == 2 and row[23] == float(rounded(score.points["active_rate"]))
    assert row[24] == float(rounded(score.deduction)) > 0
    assert row[25] == float(rounded(score.adjustment_points)) == 14.5  # 10 + 1.50 + 3 (the correction)
    assert row[26] == "+1.50 创新突破；+3.00 按实际次数"
    assert row[27] == float(rounded(score.total))
    fifth = sheet.cell(row=5, column=13)
    assert fifth.number_format == "0.00%" and sheet.cell(row=5, column=20).number_format == "0.00"


def test_ranked_units_come_best_first_numbered_by_total(sheet: Worksheet) -> None:
    ranked = [(row[0].value, row[1].value) for row in sheet.iter_rows(min_row=5, max_row=7)]
    assert ranked == [(n, s.unit.name) for n, s in zip((1, 2, 3), TABLE.ranked)]
    assert [row[27].value for row in sheet.iter_rows(min_row=5, max_row=7)] == sorted(
        (float(rounded(s.total)) for s in TABLE.ranked), reverse=True)


def test_equal_totals_share_a_place_and_the_next_skips() -> None:
    table = table_of([unit("甲"), unit("乙"), unit("丙", P=40, I=40)], [])
    sheet = load_workbook(io.BytesIO(write_report(table, DISTRICT, RULES, "通报", "热线", GENERATED))).active
    assert [sheet.cell(row=row, column=1).value for row in (5, 6, 7)] == [1, 1, 3]


def test_units_not_ranked_follow_apart_with_their_reason_and_no_place(sheet: Worksheet) -> None:
    assert sheet["A8"].value == "以下各行不参与排名（未记录热线，或评价数少于 10 条）"
    merged = {str(merged) for merged in sheet.merged_cells.ranges}
    assert f"A8:{letter(WIDTH)}8" in merged
    apart = row_of(sheet, "周村区")
    assert apart[0] is None and apart[2:12] == [8, 5, 5, 5, 0, 0, 0, 0, 0, 0]
    assert apart[12] == 0.625 and apart[16] == "-"  # 差评回复率 with no 差评
    assert apart[19] == "评价数 5 条，少于 10 条，不参与排名" and apart[20:] == [None] * 8
    assert f"T9:{letter(WIDTH)}9" in merged and sheet["B9"].value == "周村区"
    assert row_of(sheet, UNNAMED)[19] == "来电未记录热线，无法归属"
    assert sheet.max_row == 10


def test_the_table_is_ruled_sized_frozen_and_set_up_for_a4(sheet: Worksheet) -> None:
    for cell in (sheet["A3"], sheet["C4"], sheet["Z6"], sheet["AB7"], sheet["T9"], sheet["A8"]):
        assert cell.border.left.style == cell.border.bottom.style == "thin", cell.coordinate
    assert sheet["AB9"].border.right.style == sheet["AB10"].border.bottom.style == "thin"  # a merged reason's edge
    assert sheet["A2"].border.left.style is None  # the title rows are not part of the grid
    widths = {key: sheet.column_dimensions[key].width for key in ("A", "B", "C", "M", "T", "AA", "AB")}
    assert widths["B"] == 18 and widths["AA"] == 30 and all(8 <= widths[k] <= 10 for k in ("C", "M", "T", "AB"))
    assert sheet.freeze_panes == "C5"
    setup = sheet.page_setup
    assert setup.orientation == "landscape" and int(setup.paperSize) == int(sheet.PAPERSIZE_A4) == 9
    assert int(setup.fitToWidth) == 1 and int(setup.fitToHeight) == 0
    assert sheet.sheet_properties.pageSetUpPr.fitToPage
    assert sheet.print_title_rows == "$3:$4" and sheet.print_options.horizontalCentered
    assert sheet.oddFooter.center.text == "第 &P 页，共 &N 页"


def test_names_and_reasons_from_outside_stay_text(data: bytes, sheet: Worksheet) -> None:
    link = next(row for row in sheet.iter_rows(min_row=5) if row[1].value == LINK)
    assert link[1].data_type == "s" and link[26].value == "-1.00 =1+1" and link[26].data_type == "s"
    history = load_workbook(io.BytesIO(data))["加减分记录"]
    assert history["B6"].value == LINK and history["B6"].data_type == "s"
    assert history["D6"].value == "=1+1" and history["D6"].data_type == "s"
    with zipfile.ZipFile(io.BytesIO(data)) as xlsx:
        sheets = [name for name in xlsx.namelist() if name.startswith("xl/worksheets/sheet")]
        assert len(sheets) == 3 and not any("<f>" in xlsx.read(name).decode() for name in sheets)


def test_the_history_sheet_keeps_every_entry_and_marks_its_state(data: bytes) -> None:
    history = load_workbook(io.BytesIO(data))["加减分记录"]
    assert [cell.value for cell in history[1]] == ["编号", "热线", "分值", "理由", "录入人", "录入时间", "状态",
                                                   "撤销或更正人", "撤销或更正时间", "撤销或更正理由"]
    rows = [[cell.value for cell in row] for row in history.iter_rows(min_row=2)]
    assert [(row[0], row[1], row[6]) for row in rows] == [
        (1, "张店区", "有效"), (2, "博山区", "已撤销"), (3, "张店区", "已更正为 +3.00"), (4, "张店区", "有效"),
        (5, LINK, "有效")]
    assert rows[1][2] == -2 and history["C3"].number_format == "+0.00;-0.00;0.00"
    # Stored in UTC, written as Beijing time without a zone: 02:30Z is 10:30, 01:00Z is 09:00.
    assert rows[0][5] == datetime(2026, 12, 1, 10, 30) and history["F2"].number_format == "yyyy-mm-dd hh:mm"
    assert rows[1][7:] == ["chief", datetime(2026, 12, 2, 9, 0), "核实后数据属实"]
    assert rows[0][7:] == [None, None, None]
    assert history["A2"].border.left.style == "thin" and history.page_setup.orientation == "landscape"


def test_the_notes_explain_counts_rates_and_items(data: bytes) -> None:
    notes = load_workbook(io.BytesIO(data))["说明"]
    text = [[cell.value for cell in row] for row in notes.iter_rows()]
    assert ["A", "应评价数", "时段内开始、转入满意度评价的来电"] in text
    assert ["好评率", "1 − T/M", "M 为 0 时表中记为“-”，按 100% 计分"] in text
    items = [row[1] for row in text if row[0] is None and row[1]]
    assert items[:len(describe(DISTRICT, RULES))] == describe(DISTRICT, RULES)
    assert any("得分相同者名次相同" in item for item in items)


def test_a_department_table_has_no_rank_columns() -> None:
    scheme = RULES.scheme("zibo-department")
    scores = score_units([unit("市人社局")], scheme, RULES)
    table = FiguresTable(scores, [], {}, [], scheme.min_ratings)
    sheet = load_workbook(io.BytesIO(write_report(table, scheme, RULES, "通报", "承办单位", GENERATED))).active
    bottom = [cell.value for cell in sheet[4]]
    assert bottom[19:24] == ["总评价率得分（×40）", "好评率得分（×20）", "主动评价好评率得分（×20）", "扣分", "加减分"]
    assert not any("名次" in str(value) for value in bottom) and sheet["Z3"].value == "综合得分"
    assert sheet["Z5"].value == float(rounded(scores[0].total)) and sheet.max_row == 5


def test_an_empty_table_still_has_its_headings() -> None:
    sheet = load_workbook(io.BytesIO(write_report(FiguresTable([], [], {}, [], 10), DISTRICT, RULES, "通报", "热线",
                                                  GENERATED))).active
    assert sheet["A3"].value == "名次" and sheet.max_row == 4


@pytest.mark.parametrize(("period", "heading", "name"), [
    ("2026Q4", "坐席工号", "2026Q4各坐席工号好差评评估通报表.xlsx"),
    ("2026-11", "班组/队列", "2026-11各班组、队列好差评评估通报表.xlsx"),
    ("2026-11-01..2026-11-15", "承办单位", "2026-11-01..2026-11-15各承办单位好差评评估通报表.xlsx"),
])
def test_the_filename_is_chinese_and_has_no_slash(period: str, heading: str, name: str) -> None:
    assert report_filename(period, heading) == name
