"""The rating store's tables: calls, their one rating and its history, and the callback loop.

A call without a rating row is 未评价; ``Call.progress`` says how far the
caller got, so a supervisor can tell "hung up during the menu" from "heard the
menu twice and pressed nothing".
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zone type and hands back naive values; storing UTC and
    re-attaching the zone on the way out keeps comparisons honest everywhere.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store times must be timezone-aware")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Call(Base):
    """One evaluation session: a caller sent to the post-call IVR."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # insert_sentinel: a unique value we set, by which SQLAlchemy matches the ids a multi-row INSERT returns
    # to its rows; without one, SQLite gets one INSERT per row (PostgreSQL orders by the serial id anyway).
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True, insert_sentinel=True)
    linkedid: Mapped[str | None] = mapped_column(String(64), index=True)
    hotline: Mapped[str] = mapped_column(String(32), index=True)
    caller_number: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    queue: Mapped[str | None] = mapped_column(String(128))
    case_number: Mapped[str | None] = mapped_column(String(128), index=True)
    unit: Mapped[str | None] = mapped_column(String(256))
    channel: Mapped[str | None] = mapped_column(String(256))
    # The service call's own recording (the hotline's MixMonitor file), for quality listening.
    recording_file: Mapped[str | None] = mapped_column(String(512))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # How far the caller got: connected, menu, rated, reason, voice_message, thanks, completed.
    progress: Mapped[str] = mapped_column(String(32))
    # Why the session ended: completed, no_input, invalid_input, caller_hangup, error…
    end_reason: Mapped[str | None] = mapped_column(String(64))
    menu_plays: Mapped[int] = mapped_column(Integer, default=0)
    # Channel variables we did not map to columns, kept for checking.
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    rating: Mapped[Rating | None] = relationship(back_populates="call", uselist=False)


class Rating(Base):
    """The caller's rating of a call. One per call: a second attempt updates it."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True, insert_sentinel=True)
    # The rating's name outside this store (every outbound profile carries it): a UUID4 made when the row is
    # inserted, because the Asterisk uniqueid repeats across hosts and restarts and the row id across stores.
    public_id: Mapped[str] = mapped_column(String(36), unique=True, index=True, default=lambda: str(uuid.uuid4()))
    level: Mapped[str] = mapped_column(String(32), index=True)
    stars: Mapped[int] = mapped_column(Integer)
    is_negative: Mapped[bool] = mapped_column(index=True)
    # dtmf, speech, default (四平 7.3: unrated after N days) or supplementary (补充评价).
    channel: Mapped[str] = mapped_column(String(16))
    # 主动评价: the caller actually rated; false for the 7-day default.
    is_active: Mapped[bool] = mapped_column(default=True)
    reason_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason_text: Mapped[str | None] = mapped_column(Text)
    voice_message_file: Mapped[str | None] = mapped_column(String(512))
    voice_message_seconds: Mapped[float | None] = mapped_column()
    # When the retention pass deleted the message's file (voice_message_file is None from then on), so the
    # pages say it was deleted by its retention period rather than that there never was one.
    voice_message_purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # A spoken rating: the phrase the recogniser returned and its confidence (the lowest word's), so a
    # 差评 heard by machine can be checked against what was said.
    heard_text: Mapped[str | None] = mapped_column(String(256))
    heard_confidence: Mapped[float | None] = mapped_column()
    # The voice message in words, made after the call where the hotline names a transcript model:
    # status None (waiting), transcribing (claimed at voice_transcript_at), done or failed, a TranscriptStatus;
    # its moves are the table in rating_core/ratings/transcript_states.py.
    voice_transcript: Mapped[str | None] = mapped_column(Text)
    voice_transcript_confidence: Mapped[float | None] = mapped_column()
    voice_transcript_status: Mapped[str | None] = mapped_column(String(16))
    voice_transcript_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    is_adopted: Mapped[bool] = mapped_column(default=True)
    not_adopted_reason: Mapped[str | None] = mapped_column(String(256))
    # 淄博's batch rule: the rating whose batch this one joined (that one counts for 主动评价, this one not).
    batch_of_id: Mapped[int | None] = mapped_column(ForeignKey("ratings.id", ondelete="SET NULL"))
    # A supervisor ruled it counts on its own: the batch rule leaves it alone from then on.
    batch_exempt: Mapped[bool] = mapped_column(default=False, server_default=false())
    rated_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)

    call: Mapped[Call] = relationship(back_populates="rating")
    callback_task: Mapped[CallbackTask | None] = relationship(back_populates="rating", uselist=False)
    changes: Mapped[list[RatingChange]] = relationship(
        back_populates="rating", order_by="RatingChange.id", cascade="all, delete-orphan"
    )


class RatingChange(Base):
    """One change to a rating: which fields moved, from what to what, and who did it."""

    __tablename__ = "rating_changes"
    __table_args__ = (Index("ix_rating_changes_rating_id_id", "rating_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="CASCADE"))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    source: Mapped[str] = mapped_column(String(32))
    # {"field": [old, new], …}; a new rating records its initial values with old = null.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)

    rating: Mapped[Rating] = relationship(back_populates="changes")


class CallbackTask(Base):
    """The duty to call back one 差评: its deadlines, where it stands, and what comes next.

    Written in the same transaction as the 差评 itself, so a dead Redis or a
    crashed worker cannot lose it; RQ only runs what this row says is due.
    """

    __tablename__ = "callback_tasks"
    __table_args__ = (
        # The sweep's questions, each answered from an index (benchmarks/callback_backlog.py):
        # what is due, and what nears its deadline unescalated.
        Index("ix_callback_tasks_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_callback_tasks_state_escalated_at_escalate_at", "state", "escalated_at", "escalate_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rating_id: Mapped[int] = mapped_column(ForeignKey("ratings.id", ondelete="CASCADE"), unique=True)
    hotline: Mapped[str] = mapped_column(String(32))
    # The citizen's number as the call delivered it (may be absent or malformed).
    number: Mapped[str | None] = mapped_column(String(64))
    # agent_first or automated, fixed when the task is created.
    mode: Mapped[str] = mapped_column(String(16))
    # A TaskState; its moves are the table in rating_core/complaints/task_states.py.
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str | None] = mapped_column(String(256))
    assigned_agent: Mapped[str | None] = mapped_column(String(64), index=True)
    # Moved on by every change (note_event): a form carries the version it was made from, and a save from an
    # older one is refused with what changed, so that two people saving one task never overwrite each other.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # Deadlines, computed from the policy whose fingerprint is policy_version.
    verify_by: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    escalate_at: Mapped[datetime] = mapped_column(UtcDateTime())
    appeal_file_by: Mapped[datetime] = mapped_column(UtcDateTime())
    rectify_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    appeal_review_by: Mapped[datetime | None] = mapped_column(UtcDateTime())
    deadline_note: Mapped[str | None] = mapped_column(String(256))
    policy_version: Mapped[str] = mapped_column(String(32))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts_made: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    escalation_reason: Mapped[str | None] = mapped_column(String(256))
    # The verification's outcome (one of VERDICTS), who reached it, and the handling that followed.
    verdict: Mapped[str | None] = mapped_column(String(32))
    verdict_note: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rectified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What the citizen said on a callback: 问题是否已解决, and 整改满意 (the re-asked satisfaction).
    citizen_resolved: Mapped[bool | None] = mapped_column()
    citizen_satisfied: Mapped[bool | None] = mapped_column()

    rating: Mapped[Rating] = relationship(back_populates="callback_task")
    attempts: Mapped[list[CallbackAttempt]] = relationship(
        back_populates="task", order_by="CallbackAttempt.seq", cascade="all, delete-orphan"
    )
    history: Mapped[list[TaskEvent]] = relationship(
        back_populates="task", order_by="TaskEvent.id", cascade="all, delete-orphan"
    )
    answers: Mapped[list[CallbackAnswer]] = relationship(
        back_populates="task", order_by="CallbackAnswer.id", cascade="all, delete-orphan"
    )
    rectifications: Mapped[list[Rectification]] = relationship(
        back_populates="task", order_by="Rectification.id", cascade="all, delete-orphan"
    )
    # The unit's appeal, if one was filed (one per task); read by the outbox, written through Appeal.task.
    appeal: Mapped[Appeal | None] = relationship(viewonly=True, uselist=False)


class CallbackAttempt(Base):
    """One dial of a callback task, from the request to its outcome.

    ``status`` is the dialer's progress (queued → originating → ringing →
    answered → ended); an attempt leaves ``queued`` only through one
    conditional UPDATE, which is what guarantees one Originate per attempt.
    It goes back to ``queued`` (``release_attempt``) only when its Originate
    was never written, so it has used no try.
    """

    __tablename__ = "callback_attempts"
    __table_args__ = (Index("ix_callback_attempts_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    # verify (the first contact) or satisfaction (the re-ask after rectification).
    purpose: Mapped[str] = mapped_column(String(16), default="verify", server_default="verify")
    # An AttemptStatus; its moves are the table in rating_core/complaints/task_states.py.
    status: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    originated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # What was dialled (the Originate's Channel) and the ids that follow it in AMI.
    dial_string: Mapped[str | None] = mapped_column(String(256))
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    action_id: Mapped[str] = mapped_column(String(64), unique=True)
    outcome: Mapped[str | None] = mapped_column(String(32))
    originate_reason: Mapped[int | None] = mapped_column(Integer)
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    hangup_cause_text: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(String(512))
    recording_file: Mapped[str | None] = mapped_column(String(512))
    # When the retention pass deleted the recording (recording_file is None from then on).
    recording_purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    task: Mapped[CallbackTask] = relationship(back_populates="attempts")


class CallbackAnswer(Base):
    """One answer the citizen keyed on an automated callback, stored the moment it was read."""

    __tablename__ = "callback_answers"
    __table_args__ = (UniqueConstraint("attempt_id", "question"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("callback_attempts.id", ondelete="CASCADE"))
    # identity (是否本人), resolved (问题是否已解决) or satisfied (对处理结果是否满意).
    question: Mapped[str] = mapped_column(String(16))
    answer: Mapped[bool] = mapped_column()
    key: Mapped[str] = mapped_column(String(4))
    uniqueid: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    task: Mapped[CallbackTask] = relationship(back_populates="answers")


class Rectification(Base):
    """What was done about a verified 差评, by whom and when: the 报告单's 整改情况.

    A record of its own, not an event's detail, because the 报告单 and the task
    page quote it. A task handled again (the citizen was still not satisfied,
    a new verdict followed) keeps every row; the newest is the one reported.
    """

    __tablename__ = "rectifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"), index=True)
    # The verdict it carries out: immediate_fix (立行立改), explained (解释说明) or deadline_fix (限期整改).
    kind: Mapped[str] = mapped_column(String(32))
    # What was done, or for 解释说明 what the citizen was told, in the words of whoever entered it.
    what: Mapped[str] = mapped_column(Text)
    # Who entered it ("agent:2001", "unit:市人社局") and their name then, if the web tool knew it.
    actor: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A 限期整改 reported done after its deadline.
    late: Mapped[bool] = mapped_column(default=False)

    task: Mapped[CallbackTask] = relationship(back_populates="rectifications")


class TaskEvent(Base):
    """Something that happened to a callback task, who or what did it, and when."""

    __tablename__ = "callback_task_events"
    __table_args__ = (Index("ix_callback_task_events_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # e.g. "system:ivr", "system:sweep", "dialer", "agent:1024".
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    task: Mapped[CallbackTask] = relationship(back_populates="history")


class CalendarOverride(Base):
    """A day the official calendar gets wrong for us, or has no data for yet."""

    __tablename__ = "calendar_overrides"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_working_day: Mapped[bool] = mapped_column()
    note: Mapped[str | None] = mapped_column(String(256))


class BlockedNumber(Base):
    """The malicious-rater list: ratings from these numbers are stored, never adopted, never dialled."""

    __tablename__ = "blocked_numbers"

    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(256))
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WebUser(Base):
    """Someone who logs in to the web tool, with exactly one role (web/roles.py)."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    # An agent's 工号 (their callback queue, and the 非当事人 rule); a unit user's 承办单位.
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    unit: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Carried in the user's session cookie and checked on every request; raised at logout and at a
    # password change, so that every cookie issued before stops working at once (cookies are not stored).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEntry(Base):
    """An action the law wants traced: revealing a number, playing a recording, signing in."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    username: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64))


class FigureAdjustment(Base):
    """A manual 加减分 entry for one unit in one period's table, with its reason and who entered it."""

    __tablename__ = "figure_adjustments"
    __table_args__ = (Index("ix_figure_adjustments_period_dimension", "period", "dimension"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(32))
    dimension: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    points: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    reason: Mapped[str] = mapped_column(Text)
    entered_by: Mapped[str] = mapped_column(String(64))
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # An entry is never edited or deleted: a correction withdraws it and enters its replacement
    # (``corrects_id`` names the entry it replaced), so the table's history shows every change.
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("figure_adjustments.id"))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    withdrawn_by: Mapped[str | None] = mapped_column(String(64))
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)


class Appeal(Base):
    """申诉复核: the rated unit disputes a 差评 within its window; a supervisor decides within theirs."""

    __tablename__ = "appeals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("callback_tasks.id", ondelete="CASCADE"), unique=True)
    unit: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    filed_by: Mapped[str] = mapped_column(String(64))
    filed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    review_by: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # upheld (the rating becomes 误评 / 恶意 and not adopted) or rejected; None while under review. An
    # AppealDecision; its moves are the table in rating_core/complaints/appeal_states.py.
    decision: Mapped[str | None] = mapped_column(String(16))
    finding: Mapped[str | None] = mapped_column(String(16))
    decision_note: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    task: Mapped[CallbackTask] = relationship()


class QualitySample(Base):
    """A random sample of recorded calls, stratified, for supervisors to listen to and score."""

    __tablename__ = "quality_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[str] = mapped_column(String(32))
    # Comma-separated strata (hotline, agent, level); up to per_stratum calls drawn from each.
    strata: Mapped[str] = mapped_column(String(64))
    per_stratum: Mapped[int] = mapped_column(Integer)
    # The draw is repeatable: the same period, strata and seed give the same calls.
    seed: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    items: Mapped[list[QualityItem]] = relationship(
        back_populates="sample", order_by="QualityItem.id", cascade="all, delete-orphan"
    )


class QualityItem(Base):
    __tablename__ = "quality_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("quality_samples.id", ondelete="CASCADE"), index=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    stratum: Mapped[str] = mapped_column(String(256))
    score: Mapped[int | None] = mapped_column(Integer)
    # The score item by item of the rubric it was given by (code, name, weight, score each); None before 0019.
    item_scores: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)
    scored_by: Mapped[str | None] = mapped_column(String(64))
    scored_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    sample: Mapped[QualitySample] = relationship(back_populates="items")
    call: Mapped[Call] = relationship()


class FigureRollup(Base):
    """The ten counts of one local day for one hotline / unit / queue / agent ('' where not set).

    Seed 003's table over millions of calls reads these few rows per day
    instead of the calls; ``rating_core.reports.figure_rollups`` keeps them current.
    """

    __tablename__ = "figure_rollups"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hotline: Mapped[str] = mapped_column(String(32), primary_key=True)
    unit: Mapped[str] = mapped_column(String(256), primary_key=True)
    queue: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent: Mapped[str] = mapped_column(String(64), primary_key=True)
    A: Mapped[int] = mapped_column(Integer)
    M: Mapped[int] = mapped_column(Integer)
    P: Mapped[int] = mapped_column(Integer)
    I: Mapped[int] = mapped_column(Integer)  # noqa: E741 (seed 003's name)
    D: Mapped[int] = mapped_column(Integer)
    T: Mapped[int] = mapped_column(Integer)
    B: Mapped[int] = mapped_column(Integer)
    N1: Mapped[int] = mapped_column(Integer)
    N2: Mapped[int] = mapped_column(Integer)
    N3: Mapped[int] = mapped_column(Integer)


class FigureRollupState(Base):
    """One row: changes after ``refreshed_to`` are not in the rollups yet."""

    __tablename__ = "figure_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    refreshed_to: Mapped[datetime | None] = mapped_column(UtcDateTime())


class OutboxEvent(Base):
    """A change the platforms must hear of, written in the change's own transaction (the outbox)."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_fanned_out_id", "fanned_out", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # webhook-id on the wire: the receiver's key for "once per event".
    event_id: Mapped[str] = mapped_column(String(40), unique=True, insert_sentinel=True)
    type: Mapped[str] = mapped_column(String(48))
    # Events of one rating are delivered in the order of their ids.
    rating_id: Mapped[int | None] = mapped_column(Integer, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    fanned_out: Mapped[bool] = mapped_column(default=False)
    # Not a foreign key in the schema; the relationship lets a flush fill rating_id for a rating
    # inserted in the same flush, so emitting an event needs no flush of its own.
    rating: Mapped[Rating | None] = relationship(primaryjoin="foreign(OutboxEvent.rating_id) == Rating.id")


class WebhookEndpoint(Base):
    """A receiver of our events: where, which types, and the signing secret (two while one is rotated out)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(1024))
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # The body's format (rating_core/outbox/profile.py): a shipped profile's name or a profile file's path.
    profile: Mapped[str] = mapped_column(String(1024), default="native", server_default="native")
    active: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WebhookDelivery(Base):
    """One event to one endpoint: pending until a 2xx, dead after the retry window, held while the endpoint's
    profile cannot express it, replayable."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    rating_id: Mapped[int | None] = mapped_column(Integer)
    # A DeliveryStatus; its moves are the table in rating_core/outbox/delivery_states.py.
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(512))
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Held: why the profile cannot express the event (one reason a line), for the admin's page and the CLI.
    held_reasons: Mapped[str | None] = mapped_column(Text)
    # SHA-256 of the body last sent: a later event whose body would be the same is not sent again.
    body_digest: Mapped[str | None] = mapped_column(String(64))

    event: Mapped[OutboxEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship()


class InboundEvent(Base):
    """An event the platform pushed to us, kept by its webhook-id so a redelivery is applied once."""

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(48))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CaseRecord(Base):
    """The platform's case (工单) for a call: may come before the call reaches us, and is applied when it does."""

    __tablename__ = "case_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The call as the platform knows it: Asterisk's linkedid of the original call, or the uniqueid.
    linkedid: Mapped[str | None] = mapped_column(String(64), index=True)
    uniqueid: Mapped[str | None] = mapped_column(String(64), index=True)
    case_number: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str | None] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class SmsReminder(Base):
    """The one SMS that invites a caller who did not rate to rate by link (补充评价), and that link.

    One row per call at most (a unique key, so two passes cannot both plan
    one). The row leaves ``pending`` only through one conditional UPDATE to
    ``sending``, so two workers never send it at once; whatever the gateway
    answers is recorded before anything else can pick it up again.
    """

    __tablename__ = "sms_reminders"
    __table_args__ = (
        Index("ix_sms_reminders_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_sms_reminders_number_claimed_at", "number", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True, insert_sentinel=True)
    number: Mapped[str] = mapped_column(String(64))
    # The link's public id; the link also carries an HMAC of it (rating_core.ratings.supplementary).
    code: Mapped[str] = mapped_column(String(16), unique=True)
    # pending → sending → sent; or unknown (may have gone: never resent), failed, skipped. A ReminderStatus;
    # its moves are the table in rating_core/ratings/reminder_states.py.
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the first attempt was claimed: what the per-number rate limit counts.
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    gateway_message_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(String(512))
    # The end of the 补充评价 window: the link works until then, once.
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    call: Mapped[Call] = relationship()


class JournalPosition(Base):
    """How far one IVR process's journal has been applied to the store (rating_core.events.journal).

    Written in the same transaction as the events it covers, so an event is applied exactly once however
    often a journal is replayed: after a crash, by a second server, or by ``db replay-spool`` by hand.
    """

    __tablename__ = "journal_positions"

    stream: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[int] = mapped_column(Integer)
    line: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AppealEvidence(Base):
    """A file a unit handed in with its appeal (申诉证明材料): kept under the home folder by a random name.

    The name the unit's file had is kept only here, for the page and the download; on disk the file is
    ``stored_name`` (random hex, never the user's name) under the web tool's evidence folder.
    """

    __tablename__ = "appeal_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    appeal_id: Mapped[int] = mapped_column(ForeignKey("appeals.id", ondelete="CASCADE"), index=True)
    original_name: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    uploaded_by: Mapped[str] = mapped_column(String(64))
    # When the retention pass deleted the file, its appeal long decided; the row stays as the appeal's record.
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    appeal: Mapped[Appeal] = relationship()
