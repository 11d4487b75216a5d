"""The retention pass's numbers: callers' numbers past their period replaced by their keyed hash
(``rating_core.rules.number_hash``), wherever the store holds one.

Where a number is: the call (``calls.caller_number``), its callback task (``callback_tasks.number``, and as
dialled or refused in its attempts' dial strings and details, its state reason and its history), its 补充评价
SMS (``sms_reminders.number``, and what the gateway said back), and the malicious-rater list
(``blocked_numbers.number``, which goes on matching: ``batch_lookups.listed_entry`` looks a number up by its
hash too). The outbox's payloads and the platform's pushes never carry one (their schemas have no number).

Nothing of a 差评 whose callback is still open, or whose appeal is undecided, is touched: a number that may
still be dialled is kept. An SMS not yet sent (pending, sending) keeps its number for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from rating_core.ratings.reminder_states import ReminderStatus
from rating_core.ratings.retention_files import CHUNK, count, still_needed
from rating_core.rules.number_hash import NUMBER_HASH_PREFIX, hash_number
from rating_core.store.models import BlockedNumber, Call, CallbackTask, Rating, SmsReminder

# Free text holding a number this short is not searched for it: "110" in a date or a reason is not a caller.
SHORTEST_SCRUBBED = 5
UNSENT = (ReminderStatus.PENDING, ReminderStatus.SENDING)


@dataclass
class NumberCounts:
    calls: int = 0
    callback_tasks: int = 0
    sms_reminders: int = 0
    blocked_numbers: int = 0

    @property
    def total(self) -> int:
        return self.calls + self.callback_tasks + self.sms_reminders + self.blocked_numbers


def in_clear(column: InstrumentedAttribute[str | None] | InstrumentedAttribute[str]) -> ColumnElement[bool]:
    return and_(column.is_not(None), ~column.startswith(NUMBER_HASH_PREFIX, autoescape=True))


def due_calls(before: datetime) -> Select[tuple[Call]]:
    needed = exists().where(Rating.call_id == Call.id, CallbackTask.rating_id == Rating.id, still_needed())
    return select(Call).where(in_clear(Call.caller_number), Call.started_at < before, ~needed).order_by(Call.id)


def due_tasks(before: datetime) -> Select[tuple[CallbackTask]]:
    return select(CallbackTask).where(in_clear(CallbackTask.number), CallbackTask.created_at < before,
                                      ~still_needed()).order_by(CallbackTask.id)


def due_reminders(before: datetime) -> Select[tuple[SmsReminder]]:
    return select(SmsReminder).where(in_clear(SmsReminder.number), SmsReminder.created_at < before,
                                     SmsReminder.status.not_in(UNSENT)).order_by(SmsReminder.id)


def due_listed(before: datetime) -> Select[tuple[BlockedNumber]]:
    return select(BlockedNumber).where(in_clear(BlockedNumber.number), BlockedNumber.added_at < before) \
        .order_by(BlockedNumber.added_at, BlockedNumber.number)


def count_due(session: Session, before: datetime) -> NumberCounts:
    return NumberCounts(calls=count(session, due_calls(before)), callback_tasks=count(session, due_tasks(before)),
                        sms_reminders=count(session, due_reminders(before)),
                        blocked_numbers=count(session, due_listed(before)))


def scrubber(number: str, hashed: str) -> Callable[[Any], Any]:
    """A function that puts ``hashed`` for ``number`` in a text, or in every text of a JSON value."""
    def scrub(value: Any) -> Any:
        if len(number) < SHORTEST_SCRUBBED or value is None:
            return value
        if isinstance(value, str):
            return value.replace(number, hashed)
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [scrub(item) for item in value]
        return value
    return scrub


def _cut(text: str | None, size: int) -> str | None:
    return text[:size] if text is not None else None


def hash_numbers(session: Session, key: str, before: datetime) -> NumberCounts:
    """Replace every number older than ``before`` whose purpose has ended by its keyed hash."""
    counts = NumberCounts()
    after = 0
    while calls := session.execute(
            due_calls(before).with_only_columns(Call.id, Call.caller_number, Call.variables)
            .where(Call.id > after).limit(CHUNK)).all():
        after = calls[-1].id
        changes = []
        for call_id, number, variables in calls:
            hashed = hash_number(number, key)
            changes.append({"id": call_id, "caller_number": hashed,
                            "variables": scrubber(number, hashed)(variables or {})})
        session.execute(update(Call), changes)
        counts.calls += len(changes)
    after = 0
    while tasks := session.scalars(due_tasks(before).where(CallbackTask.id > after).limit(CHUNK).options(
            selectinload(CallbackTask.attempts), selectinload(CallbackTask.history))).all():
        after = tasks[-1].id
        for task in tasks:
            _hash_task(task, key)
        counts.callback_tasks += len(tasks)
    after = 0
    while reminders := session.scalars(due_reminders(before).where(SmsReminder.id > after).limit(CHUNK)).all():
        after = reminders[-1].id
        for reminder in reminders:
            hashed = hash_number(reminder.number, key)
            scrub = scrubber(reminder.number, hashed)
            reminder.number = hashed
            reminder.status_reason = _cut(scrub(reminder.status_reason), 256)
            reminder.last_error = _cut(scrub(reminder.last_error), 512)
        counts.sms_reminders += len(reminders)
    counts.blocked_numbers = _hash_listed(session, key, before)
    session.flush()
    return counts


def _hash_task(task: CallbackTask, key: str) -> None:
    number = task.number or ""
    hashed = hash_number(number, key)
    scrub = scrubber(number, hashed)
    task.number = hashed
    task.state_reason = _cut(scrub(task.state_reason), 256)
    for attempt in task.attempts:
        attempt.dial_string = _cut(scrub(attempt.dial_string), 256)
        attempt.detail = _cut(scrub(attempt.detail), 512)
    for event in task.history:
        event.detail = scrub(event.detail)


def _hash_listed(session: Session, key: str, before: datetime) -> int:
    """The list's old entries under their hashes; an entry whose hash is listed already (the number was
    listed again after its first entry was hashed) gives way to the older one, and the number stays listed."""
    hashed_count = 0
    for entry in session.scalars(due_listed(before)).all():
        hashed = hash_number(entry.number, key)
        if session.get(BlockedNumber, hashed) is not None:
            session.delete(entry)
        else:
            entry.number = hashed
        session.flush()  # one primary key at a time: the next entry's check must see this one's
        hashed_count += 1
    return hashed_count


def listed_hashes_present(session: Session) -> bool:
    """Whether the malicious-rater list holds a number the retention pass hashed: a process that compares
    numbers with the list then needs ``HOTLINE_EVAL_NUMBER_KEY``, or those numbers would pass unrecognised."""
    return session.scalar(
        select(BlockedNumber.number).where(BlockedNumber.number.startswith(NUMBER_HASH_PREFIX)).limit(1)
    ) is not None
