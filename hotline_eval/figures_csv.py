"""``figures score``'s CSV: one row of counts per unit in, rates and points per unit out.

For counts that come from other systems (a province's platform, last year's
spreadsheets): ``name,A,M,P,I,D,T,B,N1,N2,N3,adjustment``, with the table's
Chinese headings accepted too (部门 / 单位 for the name, 加减分 for the
adjustment). Every row is checked before anything is written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from rating_core.reports.scoring import COUNT_NAMES, Scheme, ScoringError, ScoringRules, UnitCounts, UnitScore, rounded

NAME_HEADINGS = ("name", "部门", "单位", "名称", "区县")
ADJUSTMENT_HEADINGS = ("adjustment", "加减分")


def read_counts(lines: Iterable[str]) -> tuple[list[UnitCounts], list[str]]:
    """The units, and warnings for counts that break the usual relations (P ≤ M, …)."""
    reader = csv.DictReader(line.lstrip("\ufeff") if i == 0 else line for i, line in enumerate(lines))
    headings = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = headings
    name_col = next((h for h in NAME_HEADINGS if h in headings), None)
    adjustment_col = next((h for h in ADJUSTMENT_HEADINGS if h in headings), None)
    missing = [n for n in COUNT_NAMES if n not in headings] + ([] if name_col else ["name"])
    if missing:
        raise ScoringError(f"columns missing: {', '.join(missing)} (have: {', '.join(headings) or 'none'})")
    units: list[UnitCounts] = []
    warnings: list[str] = []
    for line, row in enumerate(reader, start=2):
        name = (row.get(name_col) or "").strip()
        if not name:
            raise ScoringError(f"line {line}: no unit name")
        counts = {}
        for count in COUNT_NAMES:
            text = (row.get(count) or "").strip().replace(",", "")
            if not text.isdigit():
                raise ScoringError(f"line {line} ({name}): {count} must be a whole number ≥ 0, got {text!r}")
            counts[count] = int(text)
        adjustment_text = (row.get(adjustment_col) or "").strip() if adjustment_col else ""
        try:
            adjustment = Decimal(adjustment_text or "0")
        except InvalidOperation:
            raise ScoringError(f"line {line} ({name}): adjustment must be a number, got {adjustment_text!r}") from None
        if not adjustment.is_finite():
            raise ScoringError(f"line {line} ({name}): adjustment must be a number, got {adjustment_text!r}")
        unit = UnitCounts(name, counts, adjustment)
        warnings += [f"line {line} ({name}): {problem}" for problem in unit.inconsistencies()]
        units.append(unit)
    if not units:
        raise ScoringError("no units in the input")
    return units, warnings


def score_header(scheme: Scheme, rules: ScoringRules) -> list[str]:
    rate_columns = [rule.code for rule in rules.rates]
    point_columns = [f"{item.rate}_points" for item in scheme.weighted]
    for ranked in scheme.ranked:
        point_columns += [f"{ranked.rate}_rank", f"{ranked.rate}_points"]
    return ["name", *COUNT_NAMES, "adjustment", *rate_columns, *point_columns,
            "deduction", "adjustment_points", "score"]


def score_rows(scores: list[UnitScore], scheme: Scheme, rules: ScoringRules) -> Iterable[list[str]]:
    """Rates in percent with two decimals ("-" where the denominator is 0, as the table prints it)."""
    for score in scores:
        rates = [str(rounded(score.rates[r.code].value * 100)) if score.rates[r.code].defined else "-"
                 for r in rules.rates]
        points = [str(rounded(score.points[item.rate])) for item in scheme.weighted]
        for ranked in scheme.ranked:
            points += [str(score.ranks[ranked.rate]), str(rounded(score.points[ranked.rate]))]
        yield [score.unit.name, *(str(score.unit.counts[c]) for c in COUNT_NAMES), str(score.unit.adjustment),
               *rates, *points, str(rounded(score.deduction)), str(rounded(score.adjustment_points)),
               str(rounded(score.total))]
