"""The rating store's tables: calls, their one rating, and its change history.

A call without a rating row is 未评价; ``Call.progress`` says how far the
caller got, so a supervisor can tell "hung up during the menu" from "heard the
menu twice and pressed nothing".
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, TypeDecorator
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
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str | None] = mapped_column(String(64), index=True)
    hotline: Mapped[str] = mapped_column(String(32), index=True)
    caller_number: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    queue: Mapped[str | None] = mapped_column(String(128))
    case_number: Mapped[str | None] = mapped_column(String(128), index=True)
    unit: Mapped[str | None] = mapped_column(String(256))
    channel: Mapped[str | None] = mapped_column(String(256))
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
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
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
    is_adopted: Mapped[bool] = mapped_column(default=True)
    not_adopted_reason: Mapped[str | None] = mapped_column(String(256))
    rated_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    call: Mapped[Call] = relationship(back_populates="rating")
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
