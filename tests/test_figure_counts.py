"""The ten counts, each defined once (rating_core/reports/figure_counts.py): random task histories driven through the
callback loop's own functions, and a hand-counted set, read back from the calls and from the daily rollups."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rating_core.complaints.callback_tasks import (
    TaskRuleError,
    claim_attempt,
    mark_rectified,
    note_answered,
    readopt,
    record_answer,
    record_outcome,
    record_verdict,
    request_attempt,
)
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.reports.figure_counts import COUNT_NAMES, subset_pairs
from rating_core.reports.figure_rollups import rebuild_days, refresh, rolled_up_counts
from rating_core.reports.figures import parse_period, unit_counts
from rating_core.rules.rulebook import Rules
from rating_core.store.migrate import downgrade, upgrade
from rating_core.store.models import (
    Call,
    CallbackAnswer,
    CallbackAttempt,
    CallbackTask,
    FigureRollup,
    FigureRollupState,
    TaskEvent,
)
from rating_core.store.rating_history import change_rating

ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=ZONE)  # a Friday morning, inside the calling hours, in 2026Q4
QUARTER = parse_period("2026Q4", ZONE)
_serial = itertools.count()


class History:
    """One agent's calls, and the callback loop's moves on their 差评, each a minute after the last."""

    def __init__(self, store: RatingStore, rules: Rules) -> None:
        self.store, self.policy = store, rules.callback
        self.agent = f"9{next(_serial):05d}"
        self.at = T0
        self.tasks: list[int] = []

    def tick(self) -> datetime:
        self.at += timedelta(minutes=1)
        return self.at

    def call(self, level: str | None, channel: str = "dtmf") -> int | None:
        n = next(_serial)
        uid = f"1796400000.{n}"
        events: list[Any] = [CallStarted(uniqueid=uid, hotline="12345", at=self.tick(), caller_number=f"139{n:08d}",
                                         agent_id=self.agent, unit="市人社局")]
        if level:
            events.append(RatingGiven(uid, level, channel, self.tick()))
        self.store.apply(events)
        with self.store.sessions() as session:
            task = session.scalar(select(CallbackTask.id).join(CallbackTask.rating).join(Call)
                                  .where(Call.uniqueid == uid))
        if task is not None:
            self.tasks.append(task)
        return task

    def reach(self, task_id: int, answers: dict[str, bool] | None = None) -> bool:
        """The automated callback reaches the citizen, who answers ``answers``; False if no call was due."""
        at = self.tick()
        with self.store.sessions.begin() as session:
            attempt = request_attempt(session, self.policy, task_id, at, "system:test").attempt_id
            if attempt is None:
                return False
            claim_attempt(session, attempt, at, "Local/x")
            note_answered(session, attempt, at)
            for question, answer in (answers or {}).items():
                record_answer(session, attempt, question, answer, "1" if answer else "2", f"u{attempt}", at, "ivr")
            record_outcome(session, self.policy, attempt, "answered", at, "dialer")
        return True

    def late(self, task_id: int, answer: bool) -> None:
        """The IVR's journal delivers, only now, a 满意 answer the citizen keyed on the task's first answered
        call: it keeps the time it was given, however much has happened since."""
        with self.store.sessions.begin() as session:
            first = session.scalars(select(CallbackAttempt).where(
                CallbackAttempt.task_id == task_id, CallbackAttempt.answered_at.is_not(None))
                .order_by(CallbackAttempt.id)).first()
            if first is None or first.answered_at is None:
                return
            record_answer(session, first.id, "satisfied", answer, "1" if answer else "2", f"u{first.id}",
                          first.answered_at, "ivr")

    def miss(self, task_id: int) -> None:
        at = self.tick()
        with self.store.sessions.begin() as session:
            attempt = request_attempt(session, self.policy, task_id, at, "system:test").attempt_id
            if attempt is not None:
                claim_attempt(session, attempt, at, "Local/x")
                record_outcome(session, self.policy, attempt, "no_answer", at, "dialer")

    def verdict(self, task_id: int, verdict: str) -> None:
        with self.store.sessions.begin() as session:
            record_verdict(session, self.policy, task_id, verdict, self.tick(), "agent:2001", "已核实")

    def rectified(self, task_id: int) -> None:
        with self.store.sessions.begin() as session:
            mark_rectified(session, self.policy, task_id, self.tick(), "unit:市人社局", "已整改")

    def adoption(self, task_id: int, adopted: bool) -> None:
        with self.store.sessions.begin() as session:
            if adopted:
                readopt(session, self.policy, task_id, self.tick(), "boss", "复核后恢复采纳")
            else:
                task = session.get(CallbackTask, task_id)
                assert task is not None
                change_rating(task.rating, self.tick(), "boss", is_adopted=False, not_adopted_reason="申诉成立：误评")

    def counts(self) -> dict[str, int]:
        with self.store.sessions() as session:
            rows = {unit.name: unit.counts for unit in unit_counts(session, QUARTER, "agent")}
        return rows[self.agent]

    def rolled_up(self) -> dict[str, int]:
        with self.store.sessions.begin() as session:  # calls of a past day: the nightly rebuild's way in
            rebuild_days(session, {T0.date(), self.at.date()}, ZONE)
        with self.store.sessions() as session:
            rows = {unit.name: unit.counts for unit in rolled_up_counts(session, QUARTER, "agent")}
        return rows[self.agent]

    def by_hand(self) -> dict[str, int]:
        """The definitions counted again in Python from the stored rows, the answer's time read from the
        answers themselves (not from the task's summary columns the SQL reads)."""
        got = dict.fromkeys(COUNT_NAMES, 0)
        with self.store.sessions() as session:
            for call in session.scalars(select(Call).where(Call.agent_id == self.agent)):
                got["A"] += 1
                rating = call.rating
                if rating is None:
                    continue
                adopted, negative = rating.is_adopted, rating.is_negative
                active = adopted and rating.is_active and rating.batch_of_id is None
                got["M"] += adopted
                got["P"] += active
                got["I"] += active and not negative
                if not negative:
                    continue
                got["D"] += 1
                got["T"] += adopted
                got["B"] += not adopted
                task = rating.callback_task
                if task is None:
                    continue
                got["N1"] += task.verified_at is not None or any(a.outcome == "answered" for a in task.attempts)
                handled, satisfied = handling_from_history(session, task)
                got["N2"] += adopted and handled
                got["N3"] += adopted and handled and satisfied
        return got


def handling_from_history(session: Session, task: CallbackTask) -> tuple[bool, bool]:
    """Whether a task's handling is done and its citizen satisfied with it, read from its history (the events
    and the answers), not from the summary columns the SQL reads.

    The handling starts anew at each verdict or re-adoption; it is done by a rectification since, or by the
    citizen saying since that the problem is solved. An answer speaks to it if given since it started, and
    once it is rectified only the re-ask's (a satisfaction call) given since the rectification.
    """
    events = session.scalars(select(TaskEvent).where(TaskEvent.task_id == task.id)
                             .order_by(TaskEvent.at, TaskEvent.id)).all()
    starts = [event.at for event in events if event.kind in ("verified", "readopted")]
    start = starts[-1] if starts else None
    rectified = [event.at for event in events if event.kind == "rectified" and (start is None or event.at >= start)]
    rectified_at = rectified[-1] if rectified else None

    def speaks_to_it(answer: CallbackAnswer) -> bool:
        if rectified_at is not None:
            attempt = session.get(CallbackAttempt, answer.attempt_id)
            return attempt is not None and attempt.purpose == "satisfaction" and answer.at >= rectified_at
        return start is None or answer.at >= start

    def latest(question: str) -> bool | None:
        answers = session.scalars(select(CallbackAnswer).where(
            CallbackAnswer.task_id == task.id, CallbackAnswer.question == question)
            .order_by(CallbackAnswer.at, CallbackAnswer.id)).all()
        current = [answer.answer for answer in answers if speaks_to_it(answer)]
        return current[-1] if current else None

    handled = rectified_at is not None or latest("resolved") is True
    return handled, handled and latest("satisfied") is True


LEVELS = st.sampled_from([None, "very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"])
ANSWERS = st.dictionaries(st.sampled_from(["identity", "resolved", "satisfied"]), st.booleans(), max_size=3)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("reach"), ANSWERS),
    st.tuples(st.just("miss"), st.none()),
    st.tuples(st.just("verdict"), st.sampled_from(["immediate_fix", "deadline_fix", "explained", "not_adopted"])),
    st.tuples(st.just("rectified"), st.none()),
    st.tuples(st.just("adoption"), st.booleans()),
    st.tuples(st.just("late"), st.booleans()),
), max_size=8)
CALLS = st.lists(st.tuples(LEVELS, st.sampled_from(["dtmf", "default"]), STEPS), min_size=1, max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=CALLS)
def test_random_task_histories_keep_every_count_inside_the_one_it_is_part_of(store: RatingStore,
                                                                           calls: list[Any]) -> None:
    history = History(store, store.rules)
    for level, channel, steps in calls:
        task = history.call(level, channel)
        if task is None:
            continue
        for step, argument in steps:
            try:
                if step == "reach":
                    history.reach(task, argument)
                elif step == "miss":
                    history.miss(task)
                else:
                    getattr(history, step)(task, *(() if argument is None else (argument,)))
            except TaskRuleError:
                pass  # a move the rules refuse in this state: the history goes on without it
    counts = history.counts()
    assert [(part, whole) for part, whole in subset_pairs() if counts[part] > counts[whole]] == [], counts
    assert counts["T"] + counts["B"] == counts["D"] and counts["T"] <= counts["M"]
    assert counts == history.by_hand()
    assert history.rolled_up() == counts


def test_the_subset_relations_cover_every_rate() -> None:
    """Each rate's numerator is part of its denominator, so no rate of the table passes 100 %."""
    from rating_core.reports.scoring import load_scoring_rules

    pairs = set(subset_pairs())
    for rate in load_scoring_rules().rates:
        assert (rate.numerator, rate.denominator) in pairs, rate.code


def test_hand_counted_handling_and_satisfaction(store: RatingStore, rules: Rules) -> None:
    """Eight 差评 handled eight ways. N2 is what was handled; N3 only those whose citizen said 满意 after that."""
    history = History(store, rules)
    solved = history.call("dissatisfied")  # the callback: solved and satisfied → closed, handled, satisfied
    history.reach(solved, {"identity": True, "resolved": True, "satisfied": True})
    unsolved = history.call("dissatisfied")  # not solved, yet "satisfied": not handled, so in neither
    history.reach(unsolved, {"identity": True, "resolved": False, "satisfied": True})
    explained = history.call("very_dissatisfied")  # not satisfied, explained, re-asked: satisfied
    history.reach(explained, {"satisfied": False})
    history.verdict(explained, "explained")
    history.reach(explained, {"satisfied": True})
    fixed = history.call("dissatisfied")  # 限期整改 reported done, re-ask not yet made
    history.reach(fixed)
    history.verdict(fixed, "deadline_fix")
    history.rectified(fixed)
    before = history.call("dissatisfied")  # "not satisfied" before the 立行立改: not the re-ask's answer
    history.reach(before, {"satisfied": False})
    history.verdict(before, "immediate_fix")
    wrong = history.call("dissatisfied")  # 误评
    history.reach(wrong)
    history.verdict(wrong, "not_adopted")
    reopened = history.call("dissatisfied")  # satisfied, later found 误评, then re-adopted and explained anew
    history.reach(reopened, {"resolved": True, "satisfied": True})
    history.adoption(reopened, False)
    history.adoption(reopened, True)
    history.reach(reopened)
    history.verdict(reopened, "explained")
    backwards = history.call("dissatisfied")  # its 满意 (which closed the task) reached the store before 已解决
    history.reach(backwards, {"satisfied": True, "resolved": True})
    history.call("satisfied")
    assert history.counts() == {"A": 9, "M": 8, "P": 8, "I": 1, "D": 8, "T": 7, "B": 1,
                                "N1": 8, "N2": 6, "N3": 3}
    assert history.rolled_up() == history.counts() == history.by_hand()


def test_the_upgrade_clears_answers_given_before_a_rectification_and_rebuilds_the_rollups(store: RatingStore) -> None:
    """A store of the version before: a task whose 满意 came before its rectification counted in N3."""
    history = History(store, store.rules)
    early = history.call("dissatisfied")
    history.reach(early, {"resolved": False})
    history.verdict(early, "explained")
    answered = history.call("dissatisfied")
    history.reach(answered)
    history.verdict(answered, "immediate_fix")
    history.reach(answered, {"satisfied": True})  # the re-ask's answer: kept
    with store.sessions.begin() as session:
        task = session.get(CallbackTask, early)
        assert task is not None and task.rectified_at is not None
        task.citizen_satisfied = True  # as the old code left it: an answer from before the handling
        session.add(CallbackAnswer(task=task, attempt_id=task.attempts[0].id, question="satisfied", answer=True,
                                   key="1", uniqueid="u", at=task.rectified_at - timedelta(minutes=1)))
    with store.sessions.begin() as session:
        refresh(session, ZONE, datetime.now(ZONE))  # rollups and their watermark, as the figures page leaves them
    downgrade(store.engine, "0014")
    upgrade(store.engine)
    with store.sessions() as session:
        assert session.get(CallbackTask, early).citizen_satisfied is None
        assert session.get(CallbackTask, answered).citizen_satisfied is True
        assert session.scalar(select(func.count()).select_from(FigureRollup)) == 0
        assert session.get(FigureRollupState, 1).refreshed_to is None
    assert history.counts()["N3"] == 1 and history.rolled_up() == history.counts()


def test_a_handling_started_anew_counts_only_once_it_is_done_and_only_its_own_answers(store: RatingStore) -> None:
    history = History(store, store.rules)
    again = history.call("dissatisfied")  # fixed at once, still not satisfied, then given a deadline to fix it
    history.reach(again)
    history.verdict(again, "immediate_fix")
    history.reach(again, {"satisfied": False})
    history.verdict(again, "deadline_fix")
    late = history.call("dissatisfied")  # "satisfied" keyed on the verification call reaches the store late
    history.reach(late, {"resolved": False})
    history.verdict(late, "explained")
    history.late(late, True)
    counts = history.counts()
    assert (counts["N2"], counts["N3"]) == (1, 0), counts  # only the explanation is done; nobody re-asked yet
    with store.sessions() as session:
        assert session.get(CallbackTask, again).state == "rectifying"
        assert session.get(CallbackTask, late).state == "rectified"  # the late answer moved nothing
    assert counts == history.by_hand() == history.rolled_up()
