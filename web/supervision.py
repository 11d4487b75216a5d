"""The supervisors' blueprint, which several modules fill (the figures, appeals and the list, quality
listening), and what they share: who may enter, the centre's time zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint

from web.context import store

bp = Blueprint("supervisor", __name__, url_prefix="/supervisor")

FIGURE_ROLES = ("supervisor", "admin")


def zone() -> ZoneInfo:
    return ZoneInfo(store().rules.callback.timezone)
