"""Every refusal of a rule is one class with a reason a program reads and a message a person does."""

from __future__ import annotations

import ast
import importlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rating_core.complaints.callback_tasks import request_attempt
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.refusals import REASON_TEXTS, Reason, Refused

ROOT = Path(__file__).resolve().parent.parent
# Errors that are not a rule refusing a person's move but a file a deployment must mend before it starts.
CONFIGURATION_ERRORS = {"RulesError", "PromiseError", "ScoringError", "RubricError", "ProfileError"}


def value_errors() -> list[tuple[str, str]]:
    """(module, class) of every ValueError the core and the web tool define, but a configuration's."""
    found = []
    for package in ("rating_core", "web"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and node.name not in CONFIGURATION_ERRORS and issubclass(
                        cls := getattr(importlib.import_module(module), node.name), ValueError) and cls is not Refused:
                    found.append((module, node.name))
    return found


@pytest.mark.parametrize(("module", "name"), value_errors())
def test_a_rule_refuses_with_the_one_class(module: str, name: str) -> None:
    """So a view catches Refused and never a list of classes, and a new rule cannot forget it."""
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Refused) and isinstance(cls.reason, Reason)


def test_every_reason_has_words_for_a_person() -> None:
    assert set(REASON_TEXTS) == set(Reason) and all(REASON_TEXTS.values())


def test_a_refusal_carries_the_reason_it_was_raised_with_or_its_class_default() -> None:
    from rating_core.complaints.appeals import AppealError

    assert AppealError("规则不允许").reason == Reason.NOT_ALLOWED
    assert AppealError("申诉 9 不存在", Reason.NOT_FOUND).reason == Reason.NOT_FOUND
    assert str(AppealError("申诉 9 不存在", Reason.NOT_FOUND)) == "申诉 9 不存在"


def test_a_call_that_cannot_be_placed_says_why_as_a_reason_and_in_chinese(store: RatingStore, rules) -> None:
    """Formerly English words the web tool translated by matching them."""
    evening = datetime(2026, 11, 20, 21, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Friday, after calling hours
    store.apply([CallStarted(uniqueid="1796500000.1", hotline="12345", at=evening, caller_number="13900000001"),
                 RatingGiven("1796500000.1", "dissatisfied", "dtmf", evening)])
    with store.sessions.begin() as session:
        later = request_attempt(session, rules.callback, 1, evening, "system:rq")
        missing = request_attempt(session, rules.callback, 99, evening, "system:rq")
    assert (later.attempt_id, later.reason, later.message) == (None, Reason.NOT_NOW, "当前不在呼叫时段")
    assert later.retry_at is not None and later.retry_at > evening
    assert (missing.reason, missing.message) == (Reason.NOT_FOUND, "回访任务 99 不存在")
