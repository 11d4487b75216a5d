"""The 淄博 scores (seed 003, annexes 1 and 2), each expected figure worked out by hand from the text."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from rating_core.reports.scoring import ScoringError, UnitCounts, load_scoring_rules, rounded, score_units

CLI = str(Path(sys.executable).with_name("hotline-eval"))
RULES = load_scoring_rules()
HEADER = "name,A,M,P,I,D,T,B,N1,N2,N3,adjustment\n"


def unit(name: str, A=100, M=100, P=50, I=50, D=0, T=0, B=0, N1=0, N2=0, N3=0, adjustment="0") -> UnitCounts:  # noqa: E741 (the 通报表's letters)
    counts = {"A": A, "M": M, "P": P, "I": I, "D": D, "T": T, "B": B, "N1": N1, "N2": N2, "N3": N3}
    return UnitCounts(name, counts, Decimal(adjustment))


def scores(scheme: str, *units: UnitCounts) -> dict[str, dict[str, Decimal]]:
    out = {}
    for s in score_units(list(units), RULES.scheme(scheme), RULES):
        out[s.unit.name] = {**{k: rounded(v) for k, v in s.points.items()}, "rank": s.ranks.get("active_rate"),
                            "deduction": rounded(s.deduction), "adjustment": rounded(s.adjustment_points),
                            "total": rounded(s.total)}
    return out


def test_a_district_scored_item_by_item() -> None:
    # 张店区: 评价率 950/1000 × 40 = 38; 好评率 (1 − 2/950) × 20 = 19.957…; 主动评价好评率 598/600 × 20
    # = 19.933…; 主动评价率 600/950 = 63.2 % is second of two → 10 − 0.5 = 9.5; 差评 all answered,
    # rectified and satisfied → no deduction; 加减分 base 10. Total 97.391… → 97.39.
    got = scores("zibo-district",
                 unit("张店区", A=1000, M=950, P=600, I=598, D=10, T=2, B=8, N1=10, N2=2, N3=2),
                 unit("博山区", A=800, M=780, P=700, I=690, D=5, T=1, B=4, N1=5, N2=1, N3=1))
    assert got["张店区"] == {"rating_rate": Decimal("38.00"), "good_rate": Decimal("19.96"),
                          "active_good_rate": Decimal("19.93"), "active_rate": Decimal("9.50"), "rank": 2,
                          "deduction": Decimal("0.00"), "adjustment": Decimal("10.00"), "total": Decimal("97.39")}
    assert got["博山区"]["rank"] == 1 and got["博山区"]["active_rate"] == Decimal("10.00")


def test_rank_points_share_places_skip_after_ties_and_stop_below_one_percent() -> None:
    # Active rates 60 %, 60 %, 40 %, 0.5 %: places 1, 1, 3, 4 → 10, 10, 9, and 0 (under 1 %).
    got = scores("zibo-district", unit("甲", P=60, I=60), unit("乙", P=60, I=60), unit("丙", P=40, I=40),
                 unit("丁", M=1000, A=1000, P=5, I=5))
    assert [(got[n]["rank"], got[n]["active_rate"]) for n in "甲乙丙丁"] == [
        (1, Decimal("10.00")), (1, Decimal("10.00")), (3, Decimal("9.00")), (4, Decimal("0.00"))]


def test_twenty_one_places_reach_zero_and_not_below() -> None:
    units = [unit(f"u{n:02d}", P=90 - n, I=90 - n) for n in range(23)]
    got = scores("zibo-district", *units)
    assert got["u20"]["active_rate"] == Decimal("0.00")  # 10 − 0.5 × 20
    assert got["u22"]["active_rate"] == Decimal("0.00")  # 10 − 0.5 × 22 would be −1


def test_the_deduction_is_the_shortfall_of_the_three_rates() -> None:
    # 回访率 8/10, 整改率 1/2, 整改满意率 1/1: (300 % − 80 % − 50 % − 100 %) ÷ 3 × 100 = 23.33 off.
    got = scores("zibo-district", unit("甲", D=10, T=2, N1=8, N2=1, N3=1))
    assert got["甲"]["deduction"] == Decimal("23.33")
    # 40 + 20 × (1 − 2/100) + 20 × 50/50 + 10 (first) + 10 − 23.333… = 76.27
    assert got["甲"]["total"] == Decimal("76.27")


def test_a_zero_denominator_counts_as_one_hundred_percent() -> None:
    # No 差评 at all: D = T = N2 = 0, so the three deduction rates are 100 % each; no ratings:
    # M = 0 makes 好评率 and 主动评价率 100 % too; P = 0 makes 主动评价好评率 100 %.
    nothing = unit("文昌湖区", A=0, M=0, P=0, I=0)
    [score] = score_units([nothing], RULES.scheme("zibo-district"), RULES)
    assert all(rate.value == 1 and not rate.defined for rate in score.rates.values())
    assert score.deduction == 0 and rounded(score.total) == Decimal("100.00")


def test_the_total_is_capped_and_the_adjustment_is_added_to_its_base() -> None:
    got = scores("zibo-district", unit("甲", A=100, M=120, P=60, I=60, adjustment="3"))
    # 评价率 120 % × 40 = 48 (the text caps only the total), + 20 + 20 + 10 + (10 + 3) = 111 → 100.
    assert got["甲"]["rating_rate"] == Decimal("48.00") and got["甲"]["adjustment"] == Decimal("13.00")
    assert got["甲"]["total"] == Decimal("100.00")


def test_departments_have_no_rank_points_and_a_twenty_point_adjustment() -> None:
    got = scores("zibo-department", unit("市人社局", A=200, M=150, P=120, I=114, adjustment="15"),
                 unit("市医保局", A=200, M=180, P=180, I=171, adjustment="-2"))
    # 市人社局: 150/200 × 40 = 30; 20; 114/120 × 20 = 19; 加减分 10 + 15 capped at 20 → 89.
    assert got["市人社局"] == {"rating_rate": Decimal("30.00"), "good_rate": Decimal("20.00"),
                            "active_good_rate": Decimal("19.00"), "rank": None, "deduction": Decimal("0.00"),
                            "adjustment": Decimal("20.00"), "total": Decimal("89.00")}
    # 市医保局: 36 + 20 + 19 + (10 − 2) = 83.
    assert got["市医保局"]["total"] == Decimal("83.00")


def test_rounding_is_half_up_as_tables_print() -> None:
    assert rounded(Decimal("2.675")) == Decimal("2.68") and rounded(Decimal("0.125")) == Decimal("0.13")


def test_impossible_counts_are_refused_and_odd_ones_reported() -> None:
    with pytest.raises(ScoringError, match="negative"):
        unit("甲", D=-1)
    assert unit("乙", M=10, P=20, I=5).inconsistencies() == ["P > M (20 > 10)"]


# -- the command line ---------------------------------------------------------------------------


def figures(tmp_path: Path, text: str, scheme: str = "zibo-district") -> subprocess.CompletedProcess[str]:
    source = tmp_path / "counts.csv"
    source.write_text(text, encoding="utf-8")
    return subprocess.run([CLI, "figures", "score", "--rules", scheme, "--input", str(source)],
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_rates_rank_points_and_scores(tmp_path: Path) -> None:
    done = figures(tmp_path, "\ufeff部门,A,M,P,I,D,T,B,N1,N2,N3,加减分\n"
                             "张店区,1000,950,600,598,10,2,8,10,2,2,0\n博山区,800,780,700,690,5,1,4,5,1,1,\n"
                             "高新区,10,0,0,0,0,0,0,0,0,0,1.5\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0].split(",")
    rows = {line.split(",")[0]: dict(zip(header, line.split(","))) for line in lines[1:]}
    assert header[-3:] == ["deduction", "adjustment_points", "score"]
    # 高新区 has no ratings: its rates print "-" and count as 100 %, so it is first in 主动评价率,
    # 博山区 (89.7 %) second and 张店区 (63.2 %) third: 38 + 19.958 + 19.933 + 9 + 10 = 96.89.
    assert rows["高新区"]["good_rate"] == "-" and rows["高新区"]["active_rate_rank"] == "1"
    assert rows["张店区"]["rating_rate"] == "95.00" and rows["张店区"]["active_rate_rank"] == "3"
    assert rows["张店区"]["score"] == "96.89"
    assert rows["博山区"]["adjustment"] == "0" and rows["高新区"]["adjustment_points"] == "11.50"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,A,M\n甲,1,1\n", "columns missing: P, I, D, T, B, N1, N2, N3"),
        (HEADER + "甲,100,90,x,1,0,0,0,0,0,0,0\n", "line 2 (甲): P must be a whole number"),
        (HEADER + "甲,100,90,-3,1,0,0,0,0,0,0,0\n", "P must be a whole number ≥ 0"),
        (HEADER + "甲,100,90,3,1,0,0,0,0,0,0,很多\n", "adjustment must be a number"),
        (HEADER + ",100,90,3,1,0,0,0,0,0,0,0\n", "line 2: no unit name"),
        (HEADER, "no units in the input"),
        ("", "columns missing"),
    ],
)
def test_cli_bad_input_gets_a_clear_error_and_no_output(tmp_path: Path, text: str, message: str) -> None:
    done = figures(tmp_path, text)
    assert done.returncode == 1 and message in done.stderr and done.stdout == ""


def test_cli_warns_about_odd_counts_but_scores_them(tmp_path: Path) -> None:
    done = figures(tmp_path, HEADER + "甲,100,10,20,5,0,0,0,0,0,0,0\n")
    assert done.returncode == 0 and "line 2 (甲): P > M (20 > 10)" in done.stderr
    assert len(done.stdout.splitlines()) == 2


def test_cli_unknown_scheme(tmp_path: Path) -> None:
    done = figures(tmp_path, HEADER + "甲,1,1,1,1,0,0,0,0,0,0,0\n", scheme="zibo-city")
    assert done.returncode == 1 and "known: zibo-district, zibo-department" in done.stderr


def test_cli_reads_the_adjustment_as_a_delta_or_as_the_printed_points(tmp_path: Path) -> None:
    row = HEADER + "甲,100,100,50,50,0,0,0,0,0,0,12\n"
    delta = figures(tmp_path, row)
    source = tmp_path / "counts.csv"
    points = subprocess.run([CLI, "figures", "score", "--rules", "zibo-district", "--input", str(source),
                             "--adjustment", "points"], capture_output=True, text=True, timeout=60)
    # 40 + 20 + 20 + 10 (first) = 90, plus 加减分: 10 + 12 = 22 as a delta (capped total 100), 12 as printed.
    assert delta.stdout.splitlines()[1].split(",")[-2:] == ["22.00", "100.00"]
    assert points.stdout.splitlines()[1].split(",")[-2:] == ["12.00", "100.00"]
    lower = HEADER + "甲,100,90,50,50,0,0,0,0,0,0,8\n"
    # 36 + 20 + 20 + 10, plus 加减分 10 + 8 = 104, capped; or 8 as printed = 94.
    assert figures(tmp_path, lower).stdout.splitlines()[1].split(",")[-1] == "100.00"
    source.write_text(lower, encoding="utf-8")
    printed = subprocess.run([CLI, "figures", "score", "--rules", "zibo-district", "--input", str(source),
                              "--adjustment", "points"], capture_output=True, text=True, timeout=60)
    assert printed.stdout.splitlines()[1].split(",")[-1] == "94.00"
