"""A unit's composite 好差评 score from its counts, by a scheme that is data (``scoring_rules.yaml``).

Seed 003's quarterly table ranks districts and departments by rates of ten
counts (A, M, P, I, D, T, B, N1, N2, N3): some rates are worth their weight in
points, one earns points by rank, three are a deduction, and a manual
adjustment with a base is added; the total is capped. The arithmetic is
exact (``Decimal``) and rounded only for display, so a published table's
figures come out to the cent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from rating_core.reports.figure_counts import COUNT_NAMES, subset_pairs
from rating_core.rules.frozen_model import FrozenModel
from rating_core.rules.yaml_file import read_yaml

DEFAULT_SCORING_FILE = Path(__file__).with_name("scoring_rules.yaml")
ONE = Decimal(1)


class ScoringError(ValueError):
    """The scoring rules or the counts are unusable; the message says where."""


class RateRule(FrozenModel):
    code: str
    name: str
    numerator: str
    denominator: str
    complement: bool = False

    @model_validator(mode="after")
    def _counts(self) -> RateRule:
        unknown = {self.numerator, self.denominator} - set(COUNT_NAMES)
        if unknown:
            raise ValueError(f"rate {self.code}: unknown counts {sorted(unknown)}")
        return self


class Weighted(FrozenModel):
    rate: str
    weight: Decimal = Field(ge=0)


class Ranked(FrozenModel):
    """Points by place: ``first`` for the best rate, ``step`` less per place, none below ``below``."""

    rate: str
    first: Decimal = Field(ge=0)
    step: Decimal = Field(ge=0)
    below: Decimal = Field(ge=0, le=1)


class Deduction(FrozenModel):
    """(n × 100 % − the sum of n rates) ÷ n × ``times`` points off."""

    rates: tuple[str, ...]
    times: Decimal = Field(ge=0)


class Adjustment(FrozenModel):
    """The 加减分 item: ``base`` plus a unit's net entries, kept within [min, max] however many entries there are."""

    base: Decimal
    min: Decimal | None = None
    max: Decimal | None = None

    def points(self, net: Decimal) -> Decimal:
        value = self.base + net
        if self.max is not None:
            value = min(value, self.max)
        if self.min is not None:
            value = max(value, self.min)
        return value


class Scheme(FrozenModel):
    name: str
    # The table dimensions this scheme is written for (hotline, unit, queue, agent): the figures page offers
    # it for those, the first scheme listing a dimension being its default.
    dimensions: tuple[str, ...] = ()
    # A unit with fewer adopted ratings (M) is listed apart, not ranked: a handful of calls says little.
    min_ratings: int = Field(default=0, ge=0)
    weighted: tuple[Weighted, ...] = ()
    ranked: tuple[Ranked, ...] = ()
    deduction: Deduction | None = None
    adjustment: Adjustment
    cap: Decimal


class ScoringRules(FrozenModel):
    rates: tuple[RateRule, ...]
    schemes: dict[str, Scheme]

    @model_validator(mode="after")
    def _known_rates(self) -> ScoringRules:
        codes = {rate.code for rate in self.rates}
        for key, scheme in self.schemes.items():
            used = {w.rate for w in scheme.weighted} | {r.rate for r in scheme.ranked}
            used |= set(scheme.deduction.rates) if scheme.deduction else set()
            if used - codes:
                raise ValueError(f"scheme {key}: unknown rates {sorted(used - codes)}")
        return self

    def schemes_for(self, dimension: str) -> list[str]:
        """The schemes written for ``dimension``, its default first (every scheme if none names it)."""
        keys = [key for key, scheme in self.schemes.items() if dimension in scheme.dimensions]
        return keys or list(self.schemes)

    def scheme(self, key: str) -> Scheme:
        try:
            return self.schemes[key]
        except KeyError:
            raise ScoringError(f"unknown scoring rules {key!r}; known: {', '.join(self.schemes)}") from None


def load_scoring_rules(path: str | os.PathLike[str] | None = None) -> ScoringRules:
    """``path`` (``Settings.scoring_file``, ``$HOTLINE_EVAL_SCORING``), else the shipped 淄博 rules."""
    chosen = Path(path or DEFAULT_SCORING_FILE)
    document = read_yaml(chosen, ScoringError, "scoring rules")
    try:
        return ScoringRules.model_validate(document)
    except ValidationError as exc:
        raise ScoringError(f"invalid scoring rules {chosen}: {exc}") from exc


@dataclass(frozen=True)
class UnitCounts:
    """One row of the table: a unit (district, department, team, agent), its counts and its adjustment."""

    name: str
    counts: dict[str, int]
    adjustment: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        missing = [name for name in COUNT_NAMES if name not in self.counts]
        if missing:
            raise ScoringError(f"{self.name}: counts missing: {', '.join(missing)}")
        negative = [name for name in COUNT_NAMES if self.counts[name] < 0]
        if negative:
            raise ScoringError(f"{self.name}: counts may not be negative: {', '.join(negative)}")

    def inconsistencies(self) -> list[str]:
        """Relations counts from the store obey by construction (figure_counts); counts typed in from a
        published table may still break them, so they are reported, not refused."""
        c = self.counts
        return [f"{part} > {whole} ({c[part]} > {c[whole]})" for part, whole in subset_pairs() if c[part] > c[whole]]


@dataclass(frozen=True)
class Rate:
    value: Decimal
    defined: bool  # False: the denominator was 0, and the rate counts as 100 %


@dataclass
class UnitScore:
    unit: UnitCounts
    rates: dict[str, Rate]
    points: dict[str, Decimal] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    deduction: Decimal = Decimal(0)
    adjustment_points: Decimal = Decimal(0)
    total: Decimal = Decimal(0)


def rate_of(rule: RateRule, counts: dict[str, int]) -> Rate:
    denominator = counts[rule.denominator]
    if denominator == 0:
        return Rate(ONE, False)
    share = Decimal(counts[rule.numerator]) / Decimal(denominator)
    return Rate(ONE - share if rule.complement else share, True)


def score_units(units: list[UnitCounts], scheme: Scheme, rules: ScoringRules) -> list[UnitScore]:
    """Score every unit; ranked items need the whole list, so units are scored together."""
    scores = [UnitScore(unit, {rule.code: rate_of(rule, unit.counts) for rule in rules.rates}) for unit in units]
    for item in scheme.weighted:
        for score in scores:
            score.points[item.rate] = score.rates[item.rate].value * item.weight
    for ranked in scheme.ranked:
        _rank(scores, ranked)
    for score in scores:
        if scheme.deduction is not None:
            held = [score.rates[code].value for code in scheme.deduction.rates]
            score.deduction = (len(held) - sum(held, Decimal(0))) / len(held) * scheme.deduction.times
        adjustment = scheme.adjustment.points(score.unit.adjustment)
        score.adjustment_points = adjustment
        score.total = min(sum(score.points.values(), Decimal(0)) + adjustment - score.deduction, scheme.cap)
    return scores


def _rank(scores: list[UnitScore], ranked: Ranked) -> None:
    """Competition ranking (equal rates share a place, the next place skips), then points by place."""
    ordered = sorted(scores, key=lambda s: s.rates[ranked.rate].value, reverse=True)
    place = 0
    previous: Decimal | None = None
    for index, score in enumerate(ordered, 1):
        value = score.rates[ranked.rate].value
        if value != previous:
            place, previous = index, value
        score.ranks[ranked.rate] = place
        points = ranked.first - ranked.step * (place - 1)
        score.points[ranked.rate] = max(points, Decimal(0)) if value >= ranked.below else Decimal(0)


def rounded(value: Decimal, places: int = 2) -> Decimal:
    """Half up, as published tables round (Python's round() would round half to even)."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def plain_number(value: Decimal) -> str:
    """A number as a rule states it: 40 rather than 40.00 or 4E+1, 0.5 rather than 0.50."""
    return f"{value.normalize():f}"


def describe(scheme: Scheme, rules: ScoringRules) -> list[str]:
    """The scheme's rule in words, item by item, as the annex states it (for a page or a workbook's notes)."""
    names = {rate.code: rate.name for rate in rules.rates}
    lines = [f"{names[item.rate]}得分 = {names[item.rate]} × {plain_number(item.weight)}" for item in scheme.weighted]
    lines += [f"{names[item.rate]}按排名得分：第一名 {plain_number(item.first)} 分，"
              f"后续名次依次减 {plain_number(item.step)} 分，"
              f"低于 {plain_number(item.below * 100)}% 的不得分；同率同名次" for item in scheme.ranked]
    if scheme.deduction is not None:
        held = scheme.deduction.rates
        lines.append(f"扣分 = ({len(held)} × 100% − " + " − ".join(names[code] for code in held)
                     + f") ÷ {len(held)} × {plain_number(scheme.deduction.times)}")
    bounds = scheme.adjustment
    if bounds.min is not None and bounds.max is not None:
        limit = f"，合计在 {plain_number(bounds.min)} 至 {plain_number(bounds.max)} 分之间"
    elif bounds.max is not None:
        limit = f"，合计不超过 {plain_number(bounds.max)} 分"
    elif bounds.min is not None:
        limit = f"，合计不低于 {plain_number(bounds.min)} 分"
    else:
        limit = ""
    lines.append(f"加减分：基础分 {plain_number(bounds.base)} 分，按各条加减分记录增减{limit}")
    lines.append(f"综合得分 = 各项得分 − 扣分 + 加减分，不超过 {plain_number(scheme.cap)} 分")
    if scheme.min_ratings:
        lines.append(f"评价数少于 {scheme.min_ratings} 条的单位和未填写名称的单位单列，不参与排名")
    return lines


def formula(rule: RateRule) -> str:
    """A rate as the annex writes it: M/A, 1 − T/M."""
    return f"1 − {rule.numerator}/{rule.denominator}" if rule.complement else f"{rule.numerator}/{rule.denominator}"
