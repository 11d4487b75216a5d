"""One change from a form: applied and committed, or refused with its reason shown and nothing saved.

Every rule in ``rating_core`` refuses a move by raising an error whose message
is for the person who tried it (zh-CN); the views only say which errors those
are and what to say when the change went through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import flash
from sqlalchemy.orm import Session

from web import db

T = TypeVar("T")


class FormError(ValueError):
    """A form value that cannot be read."""


def whole_number(text: str | None, message: str) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise FormError(message) from None


def commit_or_flash(change: Callable[[Session], T], *refusals: type[Exception]) -> T | None:
    """Run ``change`` in the request's transaction and commit it; on a refusal, roll back, flash why, return None."""
    session = db()
    try:
        result = change(session)
    except refusals as exc:
        session.rollback()
        flash(str(exc), "error")
        return None
    session.commit()
    return result
