"""One change from a form: applied and committed, or refused with its reason shown and nothing saved.

Every rule in ``rating_core`` refuses a move by raising a
:class:`~rating_core.rules.refusals.Refused` whose message is for the person
who tried it (zh-CN); the views catch that one class and say what to say when
the change went through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from flask import flash
from sqlalchemy.orm import Session

from rating_core.rules.refusals import Reason, Refused
from web.context import db

T = TypeVar("T")


class FormError(Refused):
    """A form value that cannot be read."""

    reason = Reason.INVALID


def whole_number(text: str | None, message: str) -> int:
    """A whole number typed in a form (ASCII digits, an optional minus), or a FormError saying ``message``."""
    text = (text or "").strip()
    if not re.fullmatch(r"-?[0-9]{1,9}", text):  # not int(): it reads ٣ and 1_000, and numbers past any column
        raise FormError(message)
    return int(text)


def commit_or_flash(change: Callable[[Session], T]) -> T | None:
    """Run ``change`` in the request's transaction and commit it; on a refusal, roll back, flash why, return None."""
    session = db()
    try:
        result = change(session)
    except Refused as exc:
        session.rollback()
        flash(str(exc), "error")
        return None
    session.commit()
    return result
